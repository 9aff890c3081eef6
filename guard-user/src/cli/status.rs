//! `synguard status`: the library's [`guard_user::status::Status`] as a grouped table or JSON.

use guard_user::{lifecycle, status};

use crate::{args::StatusArgs, output::print};

pub fn status(a: &StatusArgs) -> anyhow::Result<()> {
    let key = lifecycle::find_live(&a.target.iface, a.target.netns)?;
    let st = status::read(&key)?;
    if a.json {
        print(&(serde_json::to_string(&st)? + "\n"))
    } else {
        print(&st.to_string())
    }
}
