//! A minimal reader of the kernel's BTF (`/sys/kernel/btf/vmlinux`): enough to find structs by
//! name and the byte offsets of (nested) members, so the state tracepoint program can follow
//! `sk->__sk_common.skc_net.net->ns.inum` on the running kernel without CO-RE relocations.
//!
//! Format (`Documentation/bpf/btf.rst`): a header (magic 0xeB9F, version, flags, hdr_len,
//! type_off, type_len, str_off, str_len), then the type section, a sequence of `struct btf_type`
//! (name_off, info, size/type) each followed by kind-specific data, type ids counting from 1.

use std::collections::HashMap;

use crate::error::GuardError;

const MAGIC: u16 = 0xeb9f;

/// BTF kinds (`BTF_KIND_*`).
mod kind {
    pub const INT: u32 = 1;
    pub const PTR: u32 = 2;
    pub const ARRAY: u32 = 3;
    pub const STRUCT: u32 = 4;
    pub const UNION: u32 = 5;
    pub const ENUM: u32 = 6;
    pub const FWD: u32 = 7;
    pub const TYPEDEF: u32 = 8;
    pub const VOLATILE: u32 = 9;
    pub const CONST: u32 = 10;
    pub const RESTRICT: u32 = 11;
    pub const FUNC: u32 = 12;
    pub const FUNC_PROTO: u32 = 13;
    pub const VAR: u32 = 14;
    pub const DATASEC: u32 = 15;
    pub const FLOAT: u32 = 16;
    pub const DECL_TAG: u32 = 17;
    pub const TYPE_TAG: u32 = 18;
    pub const ENUM64: u32 = 19;
}

/// A struct or union member.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub name: String,
    /// Type id of the member.
    pub type_id: u32,
    /// Offset in bits from the start of the enclosing type.
    pub bit_offset: u32,
}

/// One type of the type section (only what offset lookups need).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Type {
    pub kind: u32,
    pub name: String,
    /// Size in bytes (INT, STRUCT, UNION, ENUM, DATASEC) or referenced type id (PTR, TYPEDEF,
    /// CONST, VOLATILE, RESTRICT, TYPE_TAG, FUNC, VAR).
    pub size_or_type: u32,
    /// Members of STRUCT and UNION.
    pub members: Vec<Member>,
}

/// A parsed BTF blob.
#[derive(Debug)]
pub struct Btf {
    /// Index 0 is the implicit `void`.
    types: Vec<Type>,
    by_name: HashMap<(u32, String), u32>,
}

fn bad(what: impl Into<String>) -> GuardError {
    GuardError::Btf(what.into())
}

struct Reader<'a> {
    data: &'a [u8],
    swap: bool,
}

impl Reader<'_> {
    fn u32_at(&self, off: usize) -> Result<u32, GuardError> {
        let b: [u8; 4] = self
            .data
            .get(off..off + 4)
            .and_then(|s| s.try_into().ok())
            .ok_or_else(|| bad(format!("truncated at byte {off}")))?;
        let v = u32::from_le_bytes(b);
        Ok(if self.swap { v.swap_bytes() } else { v })
    }
}

impl Btf {
    /// Reads the running kernel's BTF.
    pub fn from_sys() -> Result<Self, GuardError> {
        let path = "/sys/kernel/btf/vmlinux";
        let data = std::fs::read(path).map_err(|source| GuardError::Io {
            what: format!("reading {path} (the kernel needs CONFIG_DEBUG_INFO_BTF)"),
            source,
        })?;
        Self::parse(&data)
    }

    /// Parses a BTF blob (either byte order).
    pub fn parse(data: &[u8]) -> Result<Self, GuardError> {
        if data.len() < 24 {
            return Err(bad("shorter than the header"));
        }
        let magic = u16::from_le_bytes([data[0], data[1]]);
        let swap = match magic {
            MAGIC => false,
            m if m.swap_bytes() == MAGIC => true,
            m => return Err(bad(format!("bad magic {m:#06x}"))),
        };
        let r = Reader { data, swap };
        let hdr_len = r.u32_at(4)? as usize;
        let type_off = r.u32_at(8)? as usize;
        let type_len = r.u32_at(12)? as usize;
        let str_off = r.u32_at(16)? as usize;
        let str_len = r.u32_at(20)? as usize;
        let types_start = hdr_len + type_off;
        let types_end = types_start + type_len;
        let strs_start = hdr_len + str_off;
        let strs = data
            .get(strs_start..strs_start + str_len)
            .ok_or_else(|| bad("string section out of bounds"))?;
        if types_end > data.len() {
            return Err(bad("type section out of bounds"));
        }
        let name = |off: u32| -> String {
            let s = &strs[(off as usize).min(strs.len())..];
            let end = s.iter().position(|&b| b == 0).unwrap_or(s.len());
            String::from_utf8_lossy(&s[..end]).into_owned()
        };
        let mut types = vec![Type {
            kind: 0,
            name: String::new(),
            size_or_type: 0,
            members: Vec::new(),
        }];
        let mut off = types_start;
        while off < types_end {
            let name_off = r.u32_at(off)?;
            let info = r.u32_at(off + 4)?;
            let size_or_type = r.u32_at(off + 8)?;
            off += 12;
            let vlen = (info & 0xffff) as usize;
            let k = (info >> 24) & 0x1f;
            let kind_flag = info >> 31 != 0;
            let mut members = Vec::new();
            off += match k {
                kind::INT => 4,
                kind::PTR
                | kind::FWD
                | kind::TYPEDEF
                | kind::VOLATILE
                | kind::CONST
                | kind::RESTRICT
                | kind::FUNC
                | kind::FLOAT
                | kind::TYPE_TAG => 0,
                kind::ARRAY => 12,
                kind::STRUCT | kind::UNION => {
                    for i in 0..vlen {
                        let m = off + i * 12;
                        let raw = r.u32_at(m + 8)?;
                        members.push(Member {
                            name: name(r.u32_at(m)?),
                            type_id: r.u32_at(m + 4)?,
                            // With kind_flag the top 8 bits hold a bitfield size.
                            bit_offset: if kind_flag { raw & 0x00ff_ffff } else { raw },
                        });
                    }
                    12 * vlen
                }
                kind::ENUM => 8 * vlen,
                kind::FUNC_PROTO => 8 * vlen,
                kind::VAR => 4,
                kind::DATASEC => 12 * vlen,
                kind::DECL_TAG => 4,
                kind::ENUM64 => 12 * vlen,
                other => return Err(bad(format!("unknown kind {other} at byte {off}"))),
            };
            types.push(Type {
                kind: k,
                name: name(name_off),
                size_or_type,
                members,
            });
        }
        if off != types_end {
            return Err(bad("type section does not end on a type boundary"));
        }
        let mut by_name = HashMap::new();
        for (id, t) in types.iter().enumerate() {
            if !t.name.is_empty() && matches!(t.kind, kind::STRUCT | kind::UNION) {
                // The first definition wins (the kernel's BTF has one per name).
                by_name.entry((t.kind, t.name.clone())).or_insert(id as u32);
            }
        }
        Ok(Self { types, by_name })
    }

    /// Number of types (without `void`).
    pub fn len(&self) -> usize {
        self.types.len() - 1
    }

    /// True if the blob has no types.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A type by id.
    pub fn get(&self, id: u32) -> Option<&Type> {
        self.types.get(id as usize)
    }

    /// Id of the struct named `name`.
    pub fn struct_id(&self, name: &str) -> Option<u32> {
        self.by_name.get(&(kind::STRUCT, name.to_owned())).copied()
    }

    /// Follows typedefs and qualifiers to the underlying type.
    fn resolve(&self, mut id: u32) -> u32 {
        for _ in 0..32 {
            match self.get(id) {
                Some(t)
                    if matches!(
                        t.kind,
                        kind::TYPEDEF
                            | kind::VOLATILE
                            | kind::CONST
                            | kind::RESTRICT
                            | kind::TYPE_TAG
                    ) =>
                {
                    id = t.size_or_type
                }
                _ => break,
            }
        }
        id
    }

    /// Finds `member` in struct/union `id`, looking through anonymous struct/union members;
    /// returns (bit offset, member type id).
    fn find_member(&self, id: u32, member: &str, depth: u32) -> Option<(u32, u32)> {
        if depth > 8 {
            return None;
        }
        let t = self.get(self.resolve(id))?;
        for m in &t.members {
            if m.name == member {
                return Some((m.bit_offset, m.type_id));
            }
        }
        for m in &t.members {
            if m.name.is_empty()
                && let Some((off, ty)) = self.find_member(m.type_id, member, depth + 1)
            {
                return Some((m.bit_offset + off, ty));
            }
        }
        None
    }

    /// Byte offset of the dotted member path `path` (e.g. `__sk_common.skc_net.net`) inside
    /// `struct root`.
    pub fn offset_of(&self, root: &str, path: &str) -> Result<u32, GuardError> {
        let mut id = self
            .struct_id(root)
            .ok_or_else(|| bad(format!("no struct {root} in the kernel's BTF")))?;
        let mut bits = 0;
        for part in path.split('.') {
            let (off, ty) = self
                .find_member(id, part, 0)
                .ok_or_else(|| bad(format!("struct {root} has no member {path} ({part})")))?;
            bits += off;
            id = ty;
        }
        if bits % 8 != 0 {
            return Err(bad(format!("{root}.{path} is a bitfield")));
        }
        Ok(bits / 8)
    }
}

/// Offsets the state tracepoint program needs: `(struct sock -> struct net *, struct net ->
/// inode number)`.
pub fn netns_offsets(btf: &Btf) -> Result<(u32, u32), GuardError> {
    let sk_net = btf.offset_of("sock", "__sk_common.skc_net.net")?;
    let net_inum = btf.offset_of("net", "ns.inum")?;
    Ok((sk_net, net_inum))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hand-built blob: `struct in { int a; int b; }`, `struct out { long x; union { struct
    /// in y; }; }` with an anonymous union.
    fn blob() -> Vec<u8> {
        let strs = b"\0int\0a\0b\0in\0out\0x\0y\0".to_vec();
        let s = |n: &str| {
            let pos = strs
                .windows(n.len() + 2)
                .position(|w| w[0] == 0 && &w[1..=n.len()] == n.as_bytes() && w[n.len() + 1] == 0)
                .unwrap();
            (pos + 1) as u32
        };
        let mut t = Vec::new();
        let mut push = |v: u32| t.extend_from_slice(&v.to_le_bytes());
        // 1: int (4 bytes)
        push(s("int"));
        push(kind::INT << 24);
        push(4);
        push(32);
        // 2: struct in { a: 1 @0, b: 1 @32 }
        push(s("in"));
        push(kind::STRUCT << 24 | 2);
        push(8);
        for (n, off) in [("a", 0), ("b", 32)] {
            push(s(n));
            push(1);
            push(off);
        }
        // 3: anonymous union { y: 2 @0 }
        push(0);
        push(kind::UNION << 24 | 1);
        push(8);
        push(s("y"));
        push(2);
        push(0);
        // 4: struct out { x: 1 @0, <anon>: 3 @64 }
        push(s("out"));
        push(kind::STRUCT << 24 | 2);
        push(16);
        push(s("x"));
        push(1);
        push(0);
        push(0);
        push(3);
        push(64);
        let mut b = Vec::new();
        b.extend_from_slice(&MAGIC.to_le_bytes());
        b.push(1);
        b.push(0);
        for v in [24u32, 0, t.len() as u32, t.len() as u32, strs.len() as u32] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b.extend_from_slice(&t);
        b.extend_from_slice(&strs);
        b
    }

    #[test]
    fn nested_and_anonymous_members() {
        let btf = Btf::parse(&blob()).unwrap();
        assert_eq!(btf.len(), 4);
        assert_eq!(btf.offset_of("in", "b").unwrap(), 4);
        assert_eq!(btf.offset_of("out", "y.b").unwrap(), 12);
        assert_eq!(btf.offset_of("out", "x").unwrap(), 0);
        assert!(btf.offset_of("out", "z").is_err());
        assert!(btf.offset_of("nope", "x").is_err());
        assert!(Btf::parse(&blob()[..30]).is_err());
        assert!(Btf::parse(&[0u8; 40]).is_err());
    }

    #[test]
    fn running_kernel_offsets() {
        // The running kernel's BTF: every kernel this project supports has it (the guard needs
        // BTF-era helpers anyway), so its absence is a failure, not a skip.
        let btf = Btf::from_sys().expect("/sys/kernel/btf/vmlinux");
        assert!(btf.len() > 10_000, "only {} types", btf.len());
        let (sk_net, net_inum) = netns_offsets(&btf).unwrap();
        // skc_net sits after the addresses, hash, ports, family/state bytes and bound_dev_if
        // in struct sock_common: around byte 48 on 64-bit kernels since 4.x.
        assert!((16..128).contains(&sk_net), "sock -> net at {sk_net}");
        assert_eq!(sk_net % 8, 0, "a pointer is aligned");
        assert!(net_inum < 4096, "net -> inum at {net_inum}");
        assert_eq!(net_inum % 4, 0);
        // sock_common is the first member of sock.
        assert_eq!(btf.offset_of("sock", "__sk_common").unwrap(), 0);
    }
}
