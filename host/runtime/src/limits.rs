//! Per-store resource limits that remember why growth was refused, so the user is told "memory limit"
//! rather than a bare trap.

use wasmtime::ResourceLimiter;

/// Tables larger than this are refused (a guest would only need it to exhaust host memory).
const MAX_TABLE_ELEMENTS: usize = 1_000_000;

pub(crate) struct Limits {
    memory_limit: usize,
    pub(crate) memory_limit_hit: bool,
}

impl Limits {
    pub(crate) fn new(memory_limit: usize) -> Self {
        Limits {
            memory_limit,
            memory_limit_hit: false,
        }
    }
}

impl ResourceLimiter for Limits {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_limit {
            self.memory_limit_hit = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}
