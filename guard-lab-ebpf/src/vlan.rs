//! VLAN tagging for a veth end, as two TCX programs (this kernel has no 8021q driver nor
//! VLAN-filtering bridges): on egress `bpf_skb_vlan_push` tags every frame (innermost tag
//! first); on ingress a frame passes only if it carries exactly the expected tags, outermost
//! first, which `bpf_skb_vlan_pop` removes, and everything else is dropped. The end then behaves
//! like a VLAN sub-interface whose parent carries nothing untagged.

use aya_ebpf::{
    Global,
    bindings::{TC_ACT_OK, TC_ACT_SHOT},
    helpers::generated::{bpf_skb_vlan_pop, bpf_skb_vlan_push},
    programs::TcContext,
};
use guard_common::lab::VLAN_TAGS_MAX;

/// The tags, outermost first (`guard_common::lab::vlan_tag`), set at load time.
#[unsafe(no_mangle)]
static VLAN_TAGS: Global<[u32; VLAN_TAGS_MAX]> = Global::new([0; VLAN_TAGS_MAX]);
/// How many of `VLAN_TAGS` are used.
#[unsafe(no_mangle)]
static VLAN_TAG_COUNT: Global<u32> = Global::new(0);

/// A tag protocol as `__sk_buff.vlan_proto` holds it and `bpf_skb_vlan_push` takes it: the
/// big-endian value.
#[inline(always)]
fn proto_be(tag: u32) -> u16 {
    ((tag >> 16) as u16).to_be()
}

/// Egress: push the tags, innermost first, so the outermost ends up outside.
#[inline(always)]
pub fn push(ctx: &TcContext) -> i32 {
    let tags = VLAN_TAGS.load();
    let n = (VLAN_TAG_COUNT.load() as usize).min(VLAN_TAGS_MAX);
    let mut i = VLAN_TAGS_MAX;
    while i > 0 {
        i -= 1;
        if i >= n {
            continue;
        }
        let tag = tags[i];
        // Safety: the program's own skb; the helper checks its arguments.
        if unsafe { bpf_skb_vlan_push(ctx.skb.skb, proto_be(tag), (tag & 0xfff) as u16) } != 0 {
            return TC_ACT_SHOT as i32;
        }
    }
    TC_ACT_OK as i32
}

/// Ingress: the stack has moved the outer tag into the skb's metadata; check it, pop it (which
/// moves the next tag from the frame into the metadata), and so on.
#[inline(always)]
pub fn pop(ctx: &TcContext) -> i32 {
    let tags = VLAN_TAGS.load();
    let n = (VLAN_TAG_COUNT.load() as usize).min(VLAN_TAGS_MAX);
    let mut i = 0;
    while i < VLAN_TAGS_MAX {
        if i >= n {
            break;
        }
        let tag = tags[i];
        // Safety: reads of the context's own fields.
        let (proto, tci) = unsafe { ((*ctx.skb.skb).vlan_proto, (*ctx.skb.skb).vlan_tci) };
        if proto != proto_be(tag) as u32 || tci & 0xfff != tag & 0xfff {
            return TC_ACT_SHOT as i32;
        }
        // Safety: the program's own skb.
        if unsafe { bpf_skb_vlan_pop(ctx.skb.skb) } != 0 {
            return TC_ACT_SHOT as i32;
        }
        i += 1;
    }
    TC_ACT_OK as i32
}
