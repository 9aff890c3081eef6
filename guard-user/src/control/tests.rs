//! Unit tests of `control`: parsing, did-you-mean, planning, the one spelling of every key.

use std::path::Path;

use super::*;
use guard_common::rst::RST_LIMIT_DEFAULT;

#[test]
fn duplicate_keys_are_refused() {
    for dup in [
        &["mode=always", "mode=off"][..],
        &["allow=+10.8.0.0/16", "deny=+10.8.0.0/16"],
        &["deny=+10.8.0.0/16", "deny=-10.8.0.0/16"],
        &["allow=+10.8.0.0/16", "allow=+10.8.1.0/16"],
        &["ttl=1", "ports=80", "ttl=1"],
        &["acl=clear", "acl=clear"],
    ] {
        let e = parse_settings(dup).unwrap_err();
        assert!(e.to_string().contains("more than once"), "{dup:?}: {e}");
    }
    parse_settings(&[
        "allow=+10.8.0.0/16",
        "allow=+10.9.0.0/16",
        "deny=+10.8.0.0/24",
    ])
    .unwrap();
    let e = parse_config_text("allow = [\"10.8.0.0/16\"]\ndeny = [\"10.8.0.0/16\"]\n").unwrap_err();
    assert!(e.to_string().contains("more than once"), "{e}");
}

#[test]
fn config_files_are_small_regular_files() {
    let e = read_config_file(Path::new("/dev/zero")).unwrap_err();
    assert!(e.to_string().contains("not a regular file"), "{e}");
    let e = read_config_file(Path::new("/")).unwrap_err();
    assert!(e.to_string().contains("not a regular file"), "{e}");
    let e = read_config_file(Path::new("/nonexistent.toml")).unwrap_err();
    assert!(e.to_string().contains("open("), "{e}");
}

fn base() -> Policy {
    Policy {
        mode: Mode::Always as u32,
        ttl: 64,
        auto_syn_rate: 0,
        auto_port_rate: 0,
        auto_hold_ms: 1000,
        ports: 0,
        reflect_limit: 0,
        reflect_prefix_v4: 24,
        reflect_prefix_v6: 64,
        acl: 0,
        bad_ack: BAD_ACK_DROP,
        rst_limit: RST_LIMIT_DEFAULT,
    }
}

#[test]
fn parses_every_key() {
    let s = parse_settings(&[
        "mode=auto",
        "auto-syn-rate=1000",
        "auto-port-rate=10",
        "auto-hold-ms=500",
        "ports=443,80,80",
        "allow=+10.1.2.3/8",
        "deny=-2001:db8::1/32",
        "acl=clear",
        "reflect-limit=5",
        "reflect-prefix-v4=16",
        "reflect-prefix-v6=48",
        "ttl=32",
        "bad-ack=rst",
        "rst-limit=250",
    ])
    .unwrap();
    assert_eq!(s[0], Setting::Mode(Mode::Auto));
    assert_eq!(s[4], Setting::Ports(Some(vec![80, 443])));
    assert_eq!(
        s[5],
        Setting::Acl(Acl::Allow, true, "10.0.0.0/8".parse().unwrap())
    );
    assert_eq!(
        s[6].clone(),
        Setting::Acl(Acl::Deny, false, "2001:db8::/32".parse().unwrap())
    );
    assert_eq!(s[11], Setting::Ttl(32));
    assert_eq!(s[12], Setting::BadAck(BAD_ACK_RST));
    assert_eq!(s[13], Setting::RstLimit(250));
    assert_eq!(
        parse_setting("bad-ack=drop").unwrap(),
        Setting::BadAck(BAD_ACK_DROP)
    );
    assert_eq!(parse_setting("ports=all").unwrap(), Setting::Ports(None));
    // Every key of the table parses, and each setting names its key.
    let keys: Vec<&str> = s.iter().map(Setting::key).collect();
    assert_eq!(keys, KEYS);
}

#[test]
fn refuses_bad_values_with_the_key() {
    for bad in [
        "mode=fast",
        "ttl=0",
        "ttl=256",
        "auto-syn-rate=-1",
        "ports=0",
        "ports=70000",
        "ports=",
        "allow=10.0.0.0/33",
        "deny=+nope",
        "acl=drop",
        "reflect-prefix-v4=0",
        "reflect-prefix-v6=129",
        "bad-ack=reset",
        "bad-ack=1",
        "rst-limit=-1",
        "rst-limit=100000001",
        "color=blue",
        "mode",
    ] {
        let e = parse_setting(bad).unwrap_err();
        assert_eq!(e.failure(), crate::error::Failure::Invalid, "{bad}");
        assert!(!e.to_string().contains('\n'), "{e}");
    }
}

#[test]
fn mistyped_keys_and_modes_get_a_suggestion() {
    for (arg, want) in [
        (
            "auto-syn-rat=5",
            "unknown key `auto-syn-rat`; did you mean `auto-syn-rate`?",
        ),
        (
            "auto_syn_rate=5",
            "unknown key `auto_syn_rate`; did you mean `auto-syn-rate`?",
        ),
        ("reflect-prefix-4=8", "did you mean `reflect-prefix-v4`?"),
        ("tll=5", "unknown key `tll`; did you mean `ttl`?"),
        ("port=80", "did you mean `ports`?"),
        ("mode=alway", "unknown mode `alway`; did you mean `always`?"),
        ("mode=monitr", "did you mean `monitor`?"),
        ("bad-ack=rs", "unknown value `rs`; did you mean `rst`?"),
        ("bad_ack=rst", "did you mean `bad-ack`?"),
    ] {
        let e = parse_setting(arg).unwrap_err().to_string();
        assert!(e.contains(want), "{arg}: {e}");
    }
    // Nothing close: the known values instead of a guess.
    let e = parse_setting("color=blue").unwrap_err().to_string();
    assert!(e.contains("unknown key `color`; known: mode, "), "{e}");
    let e = parse_setting("mode=fast").unwrap_err().to_string();
    assert!(e.contains("known: always, auto, monitor, off"), "{e}");
    // The file's keys are the same keys.
    let e = parse_config_text("auto-syn-rat = 5\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("did you mean `auto-syn-rate`?"), "{e}");
    assert_eq!(did_you_mean("mode", KEYS), Some("mode"));
    assert_eq!(did_you_mean("xyz", KEYS), None);
}

#[test]
fn plan_validates_the_combination() {
    let p = base();
    // auto without any threshold is refused as a whole.
    let e = plan(&p, &[], &[Setting::Mode(Mode::Auto)]).unwrap_err();
    assert!(e.to_string().contains("auto-syn-rate"), "{e}");
    let n = plan(
        &p,
        &[],
        &[Setting::Mode(Mode::Auto), Setting::AutoSynRate(5)],
    )
    .unwrap();
    assert_eq!(n.new.mode, Mode::Auto as u32);
    assert_eq!(n.old, p);
    // Removing an absent entry is refused.
    let c: Cidr = "10.0.0.0/8".parse().unwrap();
    assert!(plan(&p, &[], &[Setting::Acl(Acl::Deny, false, c)]).is_err());
    let n = plan(&p, &[], &[Setting::Acl(Acl::Deny, true, c)]).unwrap();
    assert_eq!(n.new.acl, ACL_V4);
    assert_eq!(n.acl, vec![(c, Acl::Deny)]);
    let n = plan(&p, &[], &[Setting::Ports(Some(vec![80]))]).unwrap();
    assert_eq!(n.new.ports, PORTS_LISTED);
    assert_eq!(n.ports, Some(Some(vec![80])));
    // Clearing the lists switches them off.
    let had = [(c.addr, c.len, Acl::Deny)];
    let n = plan(&Policy { acl: ACL_V4, ..p }, &had, &[Setting::AclClear]).unwrap();
    assert_eq!((n.new.acl, n.acl.len()), (0, 0));
}

#[test]
fn config_files() {
    let s = parse_config_text(
        "mode = \"auto\"\nauto-syn-rate = 100\nports = [80, 443]\ndeny = [\"10.9.0.0/16\"]\n",
    )
    .unwrap();
    assert!(s.contains(&Setting::Mode(Mode::Auto)));
    assert!(s.contains(&Setting::Ports(Some(vec![80, 443]))));
    assert!(s.contains(&Setting::AclClear));
    assert!(parse_config_text("ports = \"all\"\n").is_ok());
    for bad in [
        "colour = 1\n",
        "mode = \"fast\"\n",
        "ttl = 300\n",
        "ttl = \"x\"\n",
        "mode = \n",
        "ports = [0]\n",
        "deny = \"10.0.0.0/8\"\n",
        "acl = \"clear\"\n",
        "ttl = true\n",
    ] {
        let e = parse_config_text(bad).unwrap_err();
        assert_eq!(e.failure(), crate::error::Failure::Invalid, "{bad}");
    }
}

/// What `synguard status` shows of a policy is, key for key, something `set` and the file
/// accept, and it gives back the same policy.
#[test]
fn status_keys_are_the_set_keys() {
    let p = Policy {
        mode: Mode::Auto as u32,
        auto_syn_rate: 1234,
        auto_port_rate: 9,
        auto_hold_ms: 2500,
        reflect_limit: 7,
        reflect_prefix_v4: 20,
        reflect_prefix_v6: 56,
        ttl: 33,
        bad_ack: BAD_ACK_RST,
        rst_limit: 77,
        ..base()
    };
    let acl = [
        ("10.9.0.0".parse().unwrap(), 16, Acl::Deny),
        ("2001:db8::".parse().unwrap(), 32, Acl::Allow),
    ];
    let view = PolicyView::of(&p, Some(vec![80, 443]), &acl);
    let json = serde_json::to_value(&view).unwrap();
    let mut toml = String::new();
    for (k, v) in json.as_object().unwrap() {
        assert!(
            KEYS.contains(&k.as_str()),
            "status key `{k}` is not a set key"
        );
        toml += &format!("{k} = {v}\n");
    }
    let settings = parse_config_text(&toml).unwrap();
    let n = plan(&base(), &[], &settings).unwrap();
    assert_eq!(
        n.new,
        Policy {
            acl: ACL_V4 | ACL_V6,
            ports: PORTS_LISTED,
            ..p
        }
    );
    assert_eq!(n.ports, Some(Some(vec![80, 443])));
    let mut got: Vec<AclEntry> = n.acl.iter().map(|(c, a)| (c.addr, c.len, *a)).collect();
    got.sort_by_key(|e| e.0);
    assert_eq!(got, acl);
}

#[test]
fn the_file_sets_the_metrics_address_and_set_refuses_it() {
    let f = parse_config("mode = \"auto\"\nmetrics-addr = \"127.0.0.1:9464\"\n").unwrap();
    assert_eq!(f.metrics_addr, Some("127.0.0.1:9464".parse().unwrap()));
    assert!(f.settings.contains(&Setting::Mode(Mode::Auto)));
    let f = parse_config("metrics-addr = \"[::1]:9100\"\n").unwrap();
    assert_eq!(f.metrics_addr, Some("[::1]:9100".parse().unwrap()));
    for bad in [
        "metrics-addr = \"localhost\"\n",
        "metrics-addr = 9464\n",
        "metrics-addr = \"1.2.3.4:99999\"\n",
    ] {
        let e = parse_config(bad).unwrap_err();
        assert!(e.to_string().contains("metrics-addr"), "{bad}: {e}");
    }
    let e = parse_settings(&["metrics-addr=127.0.0.1:9464"]).unwrap_err();
    assert!(e.to_string().contains("restart the controller"), "{e}");
    assert_eq!(e.failure(), crate::error::Failure::Invalid);
}
