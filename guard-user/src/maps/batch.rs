//! One hand-written `bpf(2)` call: `BPF_MAP_LOOKUP_BATCH` over a per-CPU array (aya 0.14 offers
//! no batch operations), so that reading the counters costs one system call, not one per entry.

use std::{
    io,
    os::fd::{AsFd as _, AsRawFd as _},
};

use aya::maps::MapData;

/// `bpf(2)` command `BPF_MAP_LOOKUP_BATCH` (`enum bpf_cmd`, kernel 5.6).
const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;

/// The `batch` arm of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// Every entry (`len`) of the per-CPU array `map` of 8-byte values, summed over the possible
/// CPUs, in one `BPF_MAP_LOOKUP_BATCH` (aya 0.14 does not offer batch operations).
pub(super) fn percpu_sums(map: &MapData, len: u32) -> io::Result<Vec<u64>> {
    let ncpus = aya::util::nr_cpus().map_err(|(_, e)| e)?;
    let mut keys = vec![0u32; len as usize];
    // One 8-byte slot per possible CPU per entry (values are rounded up to 8 bytes).
    let mut values = vec![0u64; len as usize * ncpus];
    let mut next = 0u32;
    let mut attr = BatchAttr {
        out_batch: &mut next as *mut u32 as u64,
        keys: keys.as_mut_ptr() as u64,
        values: values.as_mut_ptr() as u64,
        count: len,
        map_fd: map.fd().as_fd().as_raw_fd() as u32,
        ..Default::default()
    };
    // Safety: `attr` is a valid `bpf_attr` batch arm whose buffers (`next`, `keys`, `values`)
    // are live and sized for `count` entries of this map; the kernel writes only into them.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_MAP_LOOKUP_BATCH,
            &mut attr as *mut BatchAttr,
            std::mem::size_of::<BatchAttr>() as u32,
        )
    };
    // ENOENT: the batch ran to the end of the map, which is where it should end.
    if rc < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::ENOENT) {
            return Err(e);
        }
    }
    if attr.count != len {
        return Err(io::Error::other(format!(
            "read {} of {len} entries",
            attr.count
        )));
    }
    let mut out = vec![0u64; len as usize];
    for (&k, c) in keys.iter().zip(values.chunks(ncpus)) {
        if let Some(slot) = out.get_mut(k as usize) {
            *slot = c.iter().fold(0u64, |a, &v| a.wrapping_add(v));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use aya::maps::{IterableMap as _, Map, PerCpuArray, PerCpuValues};

    use super::*;

    /// The batched read and aya's per-entry reads agree, on a per-CPU array with a value set on
    /// every CPU (needs privileges to create a map; skipped with a reason otherwise).
    #[test]
    fn batched_per_cpu_sums_match_per_entry_reads() {
        if !crate::guard::have_privileges() {
            eprintln!("skipped: creating a BPF map needs root");
            return;
        }
        let ncpus = aya::util::nr_cpus().unwrap();
        // BPF_MAP_CREATE (0) of a BPF_MAP_TYPE_PERCPU_ARRAY (6): 300 entries of 8 bytes.
        let attr: [u32; 5] = [6, 4, 8, 300, 0];
        // Safety: a valid prefix of `bpf_attr` for BPF_MAP_CREATE; the kernel only reads it.
        let fd = unsafe { libc::syscall(libc::SYS_bpf, 0, attr.as_ptr(), 20u32) };
        assert!(fd >= 0, "BPF_MAP_CREATE: {}", io::Error::last_os_error());
        // Safety: a fresh descriptor this test owns.
        let fd =
            unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd as i32) };
        let data = MapData::from_fd(fd).unwrap();
        let mut arr: PerCpuArray<MapData, i64> =
            PerCpuArray::try_from(Map::from_map_data(data).unwrap()).unwrap();
        for i in 0..300u32 {
            let v: Vec<i64> = (0..ncpus as i64).map(|c| i as i64 * 1000 - c * 7).collect();
            arr.set(i, PerCpuValues::try_from(v).unwrap(), 0).unwrap();
        }
        let batched = percpu_sums(arr.map(), arr.len()).unwrap();
        let each: Vec<u64> = arr
            .iter()
            .map(|v| v.unwrap().iter().sum::<i64>() as u64)
            .collect();
        assert_eq!(batched, each);
        assert_eq!(
            batched[0] as i64,
            -(0..ncpus as i64).map(|c| c * 7).sum::<i64>()
        );
    }
}
