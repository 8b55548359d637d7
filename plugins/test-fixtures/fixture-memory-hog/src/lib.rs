//! Test fixture: `run` allocates 1 MiB blocks and writes to every byte until an allocation
//! fails. When the host's memory limit refuses to grow linear memory, `run` returns
//! `Err("allocated N MiB before memory ran out")`; a host that traps on a refused grow traps
//! instead.
use octo_plugin_sdk::prelude::*;

struct MemoryHog;

const BLOCK: usize = 1024 * 1024;

impl Step for MemoryHog {
    fn describe() -> Description {
        Description::new("Memory hog")
    }

    fn run(_args: Args) -> Result {
        let mut blocks: Vec<Vec<u8>> = Vec::new();
        loop {
            let mut block = Vec::new();
            if block.try_reserve_exact(BLOCK).is_err() || blocks.try_reserve(1).is_err() {
                let mib = blocks.len();
                drop(blocks);
                bail!("allocated {mib} MiB before memory ran out");
            }
            block.resize(BLOCK, 0xA5); // touch every page
            blocks.push(std::hint::black_box(block));
        }
    }
}

step!(MemoryHog, description = "Allocates memory until it fails");
