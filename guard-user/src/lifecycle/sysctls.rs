//! The sysctls' original values: recorded in a pinned one-entry array per namespace before the
//! first change, and written back by the last guard of the namespace to go.

use std::path::PathBuf;

use aya::maps::{Array, MapData};

use super::{io, lock::lock_namespace, netns_cookie, other_guards};
use crate::{error::GuardError, pin, sysctl};

/// The sysctls the guard changes, with the value it sets (see [`tuning::prepare_sysctls`]).
pub const CHANGED_SYSCTLS: [(&str, &str); 2] = [
    ("net.ipv4.tcp_syncookies", "2"),
    ("net.ipv4.tcp_timestamps", "2"),
];

/// Directory of the per-namespace records of the sysctls' original values.
pub const RECORD_DIR: &str = "/sys/fs/bpf/synguard/sysctls";
const RECORD_MAGIC: u32 = 0x5359_5343; // "SYSC"

/// The pinned record of a namespace's original sysctl values.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SysctlRecord {
    /// The namespace's cookie: a record whose cookie differs from the namespace now at that
    /// inode belongs to a namespace that is gone.
    pub netns_cookie: u64,
    pub magic: u32,
    /// Entries of `originals` in use.
    pub count: u32,
    /// Original value of each of [`CHANGED_SYSCTLS`], in that order; -1 where unknown.
    pub originals: [i32; 2],
}

// Safety: repr(C), plain integers, no padding (8 + 4 + 4 + 8 bytes).
unsafe impl aya::Pod for SysctlRecord {}

impl SysctlRecord {
    /// `(name, original value)` of every sysctl recorded.
    pub fn values(&self) -> Vec<(String, String)> {
        CHANGED_SYSCTLS
            .iter()
            .zip(self.originals)
            .take(self.count as usize)
            .filter(|(_, v)| *v >= 0)
            .map(|((n, _), v)| ((*n).to_owned(), v.to_string()))
            .collect()
    }
}

fn record_path(netns: u64) -> PathBuf {
    pin::host_path(RECORD_DIR).join(netns.to_string())
}

/// Reads the pinned record of namespace `netns` (any cookie), `None` if there is none.
pub fn read_record(netns: u64) -> Result<Option<SysctlRecord>, GuardError> {
    let path = record_path(netns);
    if !path.exists() {
        return Ok(None);
    }
    let err = |op| {
        let path = path.clone();
        move |e: aya::maps::MapError| GuardError::SysctlRecord {
            path,
            op,
            source: Box::new(e),
        }
    };
    let data = MapData::from_pin(&path).map_err(err("BPF_OBJ_GET"))?;
    let arr: Array<MapData, SysctlRecord> =
        Array::try_from(aya::maps::Map::Array(data)).map_err(err("opening as an array"))?;
    let rec = arr.get(&0, 0).map_err(err("BPF_MAP_LOOKUP_ELEM"))?;
    Ok((rec.magic == RECORD_MAGIC).then_some(rec))
}

fn write_record(netns: u64, rec: &SysctlRecord) -> Result<(), GuardError> {
    let path = record_path(netns);
    let err = |op| {
        let path = path.clone();
        move |e: Box<dyn std::error::Error + Send + Sync>| GuardError::SysctlRecord {
            path,
            op,
            source: e,
        }
    };
    let dir = pin::host_path(RECORD_DIR);
    // Pinned in place: a reader sees the whole record or none. The last record's removal also
    // removes the (then empty) directory, which another namespace's guard may do between this
    // one's mkdir and its pin: make it again (pinning consumes the map, so a new one). Once the
    // temporary pin is in, the directory is not empty and stays.
    let pinned = pin::pin_in_place(&path, |tmp| {
        let mut tries = 0;
        loop {
            let mut arr: Array<MapData, SysctlRecord> =
                Array::create(1, 0).map_err(|e| err("BPF_MAP_CREATE")(e.into()))?;
            arr.set(0, rec, 0)
                .map_err(|e| err("BPF_MAP_UPDATE_ELEM")(e.into()))?;
            pin::ensure_pin_dir(&dir)?;
            match arr.pin(tmp) {
                Ok(()) => return Ok(()),
                Err(aya::pin::PinError::SyscallError(e))
                    if e.io_error.kind() == std::io::ErrorKind::NotFound && tries < 32 =>
                {
                    tries += 1
                }
                Err(e) => return Err(err("BPF_OBJ_PIN")(e.into())),
            }
        }
    });
    match pinned {
        Ok(()) => Ok(()),
        Err(pin::PinInPlace::Pin(e)) => Err(e),
        Err(pin::PinInPlace::Rename(what, e)) => Err(io(what)(e)),
    }
}

/// Removes namespace `netns`'s record, then the record directory and the pin root if that
/// left them empty (the host as it was before the first guard).
pub(super) fn remove_record(netns: u64) -> Result<(), GuardError> {
    let path = record_path(netns);
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(format!("unlink({})", path.display()))(e)),
    }
    pin::remove_empty_dir(&pin::host_path(RECORD_DIR));
    pin::remove_empty_dir(&pin::host_path(pin::PIN_ROOT));
    Ok(())
}

/// Writes back every recorded original whose sysctl still holds the value the synguard set
/// (a value changed by someone else since is left alone); returns `name=value` of each write.
fn write_back(values: &[(String, String)]) -> Result<Vec<String>, GuardError> {
    let mut done = Vec::new();
    for (name, orig) in values.iter().rev() {
        let Some((_, set)) = CHANGED_SYSCTLS.iter().find(|(n, _)| n == name) else {
            continue;
        };
        let now = sysctl::read(name)?;
        if now == *set && now != *orig {
            sysctl::write(name, orig)?;
            done.push(format!("{name}={orig}"));
        } else if now != *orig {
            log::warn!("{name} is {now}, not the {set} the synguard set: left alone (was {orig})");
        }
    }
    Ok(done)
}

/// Before a guard of namespace `netns` (the calling thread's) changes any sysctl: records their
/// current values unless a record of this namespace exists. A record left by guards that are
/// all gone (a controller killed with SIGKILL) is restored first, then recorded again: the
/// values it holds are the true originals, never values a synguard set. `me` is the interface of
/// the starting guard, `pinned_here` true if a pinned guard already runs on it (a takeover),
/// `copy` the originals its state file recorded (used when the pinned record is missing).
/// Returns the originals.
pub fn record_originals(
    netns: u64,
    me: &str,
    pinned_here: bool,
    copy: &[(String, String)],
) -> Result<Vec<(String, String)>, GuardError> {
    let _ns = lock_namespace(netns)?;
    let cookie = netns_cookie()?;
    if let Some(rec) = read_record(netns)? {
        if rec.netns_cookie != cookie {
            log::warn!(
                "dropping the sysctl record of a network namespace that is gone (inode {netns} \
                 reused)"
            );
        } else if pinned_here || !other_guards(netns, me).is_empty() {
            return Ok(rec.values());
        } else {
            let restored = write_back(&rec.values())?;
            if !restored.is_empty() {
                log::warn!(
                    "restored sysctls left changed by a guard that died: {}",
                    restored.join(", ")
                );
            }
        }
    }
    let mut rec = SysctlRecord {
        netns_cookie: cookie,
        magic: RECORD_MAGIC,
        count: CHANGED_SYSCTLS.len() as u32,
        originals: [-1; 2],
    };
    // Without a record, a live guard's values may be what it set: the state file's copy, else
    // unknown (never a value that may be the guard's).
    let live = pinned_here || !other_guards(netns, me).is_empty();
    for (slot, (name, set)) in rec.originals.iter_mut().zip(CHANGED_SYSCTLS) {
        let now = sysctl::read(name)?;
        let value = match copy.iter().find(|(n, _)| n == name) {
            Some((_, v)) if live => v.clone(),
            _ if live && now == set => {
                log::warn!(
                    "the original value of {name} is unknown (no record of it): it stays {now} \
                     when the guard goes"
                );
                continue;
            }
            _ => now,
        };
        *slot = value.parse().unwrap_or(-1);
    }
    write_record(netns, &rec)?;
    Ok(rec.values())
}

/// What [`restore_originals`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Restored {
    /// These `name=value` were written back (possibly none: nothing had changed).
    Written(Vec<String>),
    /// Guards on these other interfaces of the namespace still need the values.
    Kept(Vec<String>),
}

/// When the guard of `me` leaves namespace `netns` (the calling thread's): unless another guard
/// of the namespace lives, writes the recorded originals back (the pinned record, else
/// `fallback`, the state file's copy) and removes the record.
pub fn restore_originals(
    netns: u64,
    me: &str,
    fallback: &[(String, String)],
) -> Result<Restored, GuardError> {
    let _ns = lock_namespace(netns)?;
    let others = other_guards(netns, me);
    if !others.is_empty() {
        return Ok(Restored::Kept(others));
    }
    let cookie = netns_cookie()?;
    let values = match read_record(netns)? {
        Some(rec) if rec.netns_cookie == cookie => rec.values(),
        _ => fallback.to_vec(),
    };
    let done = write_back(&values)?;
    remove_record(netns)?;
    Ok(Restored::Written(done))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_values_skip_unknown() {
        let r = SysctlRecord {
            netns_cookie: 1,
            magic: RECORD_MAGIC,
            count: 2,
            originals: [1, -1],
        };
        assert_eq!(
            r.values(),
            vec![("net.ipv4.tcp_syncookies".to_owned(), "1".to_owned())]
        );
        assert_eq!(size_of::<SysctlRecord>(), 24);
    }

    /// Records written and removed from several threads at once (as guards of different
    /// namespaces do): the last removal takes the record directory with it, and no write fails
    /// because another thread removed the directory under it.
    #[test]
    fn records_come_and_go_with_their_directory() {
        if !crate::guard::have_privileges() {
            eprintln!("skipped: pinning a BPF map needs root");
            return;
        }
        // Namespace ids no real namespace has (their inodes are 32-bit).
        let ids: Vec<u64> = (0..6).map(|i| u64::MAX - 1000 - i).collect();
        let rec = |id: u64| SysctlRecord {
            netns_cookie: id,
            magic: RECORD_MAGIC,
            count: 2,
            originals: [1, 1],
        };
        std::thread::scope(|s| {
            for &id in &ids {
                s.spawn(move || {
                    for round in 0..40 {
                        write_record(id, &rec(id))
                            .unwrap_or_else(|e| panic!("write {id} round {round}: {e}"));
                        assert_eq!(read_record(id).unwrap(), Some(rec(id)));
                        remove_record(id).unwrap();
                        assert_eq!(read_record(id).unwrap(), None);
                    }
                });
            }
        });
        // Each directory is left only if something else of this host's guards is in it.
        for dir in [pin::host_path(RECORD_DIR), pin::host_path(pin::PIN_ROOT)] {
            let left: Vec<_> = std::fs::read_dir(&dir)
                .map(|rd| rd.flatten().map(|e| e.file_name()).collect())
                .unwrap_or_default();
            assert!(
                dir.exists() != left.is_empty(),
                "{} left as {left:?}",
                dir.display()
            );
        }
    }
}
