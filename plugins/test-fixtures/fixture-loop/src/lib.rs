//! Test fixture: `run` spins forever in pure WebAssembly (no imports in the loop), so only the
//! host's deadline (epoch interruption) can stop it.
use octo_plugin_sdk::prelude::*;

struct Spin;

impl Step for Spin {
    fn describe() -> Description {
        Description::new("Loop")
    }

    fn run(_args: Args) -> Result {
        let mut n: u64 = 0;
        loop {
            // `black_box` keeps the optimiser from proving anything about the loop.
            n = std::hint::black_box(n.wrapping_add(1));
        }
    }
}

step!(Spin, description = "Loops forever");
