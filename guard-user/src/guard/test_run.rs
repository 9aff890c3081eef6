//! Running the loaded program on a frame with `BPF_PROG_TEST_RUN`: the fixture tables, the
//! fuzz test and the benches drive the data path this way, without an interface.

use std::time::Duration;

use aya::programs::{TestRun, TestRunOptions, Xdp};

use super::Guard;
use crate::error::GuardError;

/// Output of one `BPF_PROG_TEST_RUN`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestRunOutput {
    /// The XDP verdict.
    pub verdict: u32,
    /// The frame after the program (rewritten for XDP_TX).
    pub data: Vec<u8>,
    /// Average run time per repetition.
    pub duration: Duration,
}

impl Guard {
    /// Runs the program once on `frame` with `BPF_PROG_TEST_RUN` (in the caller's network
    /// namespace, as if received on its loopback device).
    pub fn test_run(&self, frame: &[u8]) -> Result<TestRunOutput, GuardError> {
        self.test_run_repeat(frame, 1)
    }

    /// Like [`Guard::test_run`], repeated `repeat` times in the kernel; `duration` is the mean.
    pub fn test_run_repeat(&self, frame: &[u8], repeat: u32) -> Result<TestRunOutput, GuardError> {
        test_run_xdp(self.program(), frame, repeat)
    }

    /// Like [`Guard::test_run`], as if the frame arrived on the interface with index
    /// `ingress_ifindex` (its receive queue 0 must be registered for XDP: an interface with an
    /// XDP program attached) instead of the loopback device.
    pub fn test_run_on(
        &self,
        frame: &[u8],
        ingress_ifindex: u32,
    ) -> Result<TestRunOutput, GuardError> {
        test_run_xdp_on(self.program(), frame, 1, Some(ingress_ifindex))
    }
}

/// `BPF_PROG_TEST_RUN` of an XDP program on `frame`, `repeat` times.
pub fn test_run_xdp(prog: &Xdp, frame: &[u8], repeat: u32) -> Result<TestRunOutput, GuardError> {
    test_run_xdp_on(prog, frame, repeat, None)
}

fn test_run_xdp_on(
    prog: &Xdp,
    frame: &[u8],
    repeat: u32,
    ingress_ifindex: Option<u32>,
) -> Result<TestRunOutput, GuardError> {
    // Room for the largest SYN-ACK whatever the input size.
    let mut out = vec![0u8; frame.len().max(128) + 256];
    // `struct xdp_md`: data, data_end, data_meta, ingress_ifindex, rx_queue_index,
    // egress_ifindex (no metadata: data 0, data_end the frame's length).
    let ctx: Option<Vec<u8>> = ingress_ifindex.map(|ifindex| {
        [0, frame.len() as u32, 0, ifindex, 0, 0]
            .iter()
            .flat_map(|v| v.to_ne_bytes())
            .collect()
    });
    let res = prog
        .test_run(TestRunOptions {
            data_in: Some(frame),
            data_out: Some(&mut out),
            ctx_in: ctx.as_deref(),
            repeat,
            ..Default::default()
        })
        .map_err(|source| GuardError::TestRun { source })?;
    out.truncate(res.data_size_out as usize);
    Ok(TestRunOutput {
        verdict: res.return_value,
        data: out,
        duration: res.duration,
    })
}
