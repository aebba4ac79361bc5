//! The `inflight` command line: the bundled pipelines registered with the runner library exactly as
//! a user registers their own, plus the bundled binary's `gen` and `bench` commands.

mod backtest;
mod bench;
mod tools;

// Records, cases and decisions are small, short-lived allocations made on every worker at once;
// mimalloc's per-thread heaps serve them faster than the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use inflight::app::App;
use inflight::bundled::{Code, Flight, Trading};

fn main() {
    App::new("inflight")
        .about("Turn live event streams into decisions in milliseconds")
        .pipeline::<Trading>()
        .pipeline::<Flight>()
        .pipeline::<Code>()
        .commands(tools::run)
        .main()
}
