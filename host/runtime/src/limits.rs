//! What a step may produce and what the host accepts ([`Limits`], part of the runtime's config), and
//! the per-store resource limiter that remembers why growth was refused, so the user is told "memory
//! limit" rather than a bare trap.

use wasmtime::ResourceLimiter;

/// Size limits on everything a step or a plugin hands the host. Each is configurable (`[limits]` in
/// the server's and the tentacle's settings); going over one is a one-line error, or a notice in the
/// step's log where the step goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// A log line longer than this is cut, with a notice (default 16 KiB).
    pub max_line_bytes: usize,
    /// Log volume of one step; past it, lines are dropped after one notice (default 32 MiB). Each
    /// line counts its bytes plus [`Limits::LOG_LINE_OVERHEAD`], about what it costs in a journal.
    pub max_log_bytes: u64,
    /// How many output variables one step may set (default 100,000).
    pub max_output_variables: usize,
    /// The largest value of one output variable (default 1 MiB).
    pub max_output_value_bytes: usize,
    /// All output variables of one step together, names and values (default 16 MiB).
    pub max_output_bytes: usize,
    /// The largest step template JSON (default 4 MiB).
    pub max_template_bytes: usize,
    /// The largest component (default 128 MiB).
    pub max_component_bytes: usize,
    /// The largest custom section in a component (default 16 MiB).
    pub max_custom_section_bytes: usize,
    /// The largest steps-feed index or signature document the feed client accepts (default 32 MiB).
    pub max_feed_index_bytes: u64,
}

impl Limits {
    /// What each log line costs besides its text, for [`Limits::max_log_bytes`].
    pub const LOG_LINE_OVERHEAD: u64 = 64;

    /// The names of the limits as settings spell them (`[limits]` in `octo.toml` and `tentacle.toml`).
    pub const NAMES: &'static [&'static str] = &[
        "maxLineBytes",
        "maxLogBytes",
        "maxOutputVariables",
        "maxOutputValueBytes",
        "maxOutputBytes",
        "maxTemplateBytes",
        "maxComponentBytes",
        "maxCustomSectionBytes",
        "maxFeedIndexBytes",
    ];

    /// These limits with the settings' `[limits]` table applied (names as in [`Limits::NAMES`]).
    /// An unknown name or a zero is a one-line error naming it.
    pub fn with_settings<'a>(
        mut self,
        table: impl IntoIterator<Item = (&'a str, u64)>,
    ) -> Result<Self, LimitError> {
        for (name, value) in table {
            if value == 0 {
                return Err(LimitError::Zero(name.to_string()));
            }
            let size = usize::try_from(value).unwrap_or(usize::MAX);
            match name {
                "maxLineBytes" => self.max_line_bytes = size,
                "maxLogBytes" => self.max_log_bytes = value,
                "maxOutputVariables" => self.max_output_variables = size,
                "maxOutputValueBytes" => self.max_output_value_bytes = size,
                "maxOutputBytes" => self.max_output_bytes = size,
                "maxTemplateBytes" => self.max_template_bytes = size,
                "maxComponentBytes" => self.max_component_bytes = size,
                "maxCustomSectionBytes" => self.max_custom_section_bytes = size,
                "maxFeedIndexBytes" => self.max_feed_index_bytes = value,
                other => return Err(LimitError::Unknown(other.to_string())),
            }
        }
        Ok(self)
    }

    /// The component limits, as the manifest reader takes them.
    pub fn component(&self) -> octo_manifest::ComponentLimits {
        octo_manifest::ComponentLimits {
            max_component_bytes: self.max_component_bytes,
            max_custom_section_bytes: self.max_custom_section_bytes,
        }
    }

    /// How much of one output line the host reads: a log line, or a service message carrying the
    /// largest output variable (base64, plus room for the name and the syntax). Always more than
    /// [`Limits::max_line_bytes`], so a line cut here is also cut, with its notice, in the log.
    pub(crate) fn read_line_bytes(&self) -> usize {
        self.max_line_bytes
            .saturating_add(1)
            .max(self.max_output_value_bytes.saturating_mul(4) / 3 + 8 * 1024)
    }
}

/// A `[limits]` entry that cannot be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    /// Not one of [`Limits::NAMES`].
    #[error("unknown limit {0:?} in [limits]; known limits: {names}", names = Limits::NAMES.join(", "))]
    Unknown(String),
    /// A limit of zero would refuse everything.
    #[error("limit {0} in [limits] must be greater than 0")]
    Zero(String),
}

impl Default for Limits {
    fn default() -> Self {
        let component = octo_manifest::ComponentLimits::default();
        Limits {
            max_line_bytes: 16 * 1024,
            max_log_bytes: 32 * 1024 * 1024,
            max_output_variables: 100_000,
            max_output_value_bytes: 1024 * 1024,
            max_output_bytes: 16 * 1024 * 1024,
            max_template_bytes: 4 * 1024 * 1024,
            max_component_bytes: component.max_component_bytes,
            max_custom_section_bytes: component.max_custom_section_bytes,
            max_feed_index_bytes: 32 * 1024 * 1024,
        }
    }
}

/// Tables larger than this are refused (a guest would only need it to exhaust host memory).
const MAX_TABLE_ELEMENTS: usize = 1_000_000;

/// How many core instances, memories and tables one store may create: what the runtime's pool would
/// let one component instance have (see `Runtime::new`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct StoreCounts {
    pub(crate) core_instances: usize,
    pub(crate) memories: usize,
    pub(crate) tables: usize,
}

pub(crate) struct StoreLimits {
    memory_limit: usize,
    counts: StoreCounts,
    pub(crate) memory_limit_hit: bool,
}

impl StoreLimits {
    pub(crate) fn new(memory_limit: usize, counts: StoreCounts) -> Self {
        StoreLimits {
            memory_limit,
            counts,
            memory_limit_hit: false,
        }
    }
}

impl ResourceLimiter for StoreLimits {
    // A store (one component instance) gets no more than the pool would give it, whichever the
    // allocator: the pool refuses more by itself, the on-demand allocator only through these.
    fn instances(&self) -> usize {
        self.counts.core_instances
    }

    fn memories(&self) -> usize {
        self.counts.memories
    }

    fn tables(&self) -> usize {
        self.counts.tables
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_override_by_name() {
        let limits = Limits::default()
            .with_settings([("maxLogBytes", 1000), ("maxOutputVariables", 7)])
            .unwrap();
        assert_eq!(limits.max_log_bytes, 1000);
        assert_eq!(limits.max_output_variables, 7);
        assert_eq!(limits.max_line_bytes, Limits::default().max_line_bytes);
        let err = Limits::default()
            .with_settings([("maxLogs", 1)])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("unknown limit \"maxLogs\"") && err.contains("maxLogBytes"),
            "{err}"
        );
        assert!(
            Limits::default()
                .with_settings([("maxLineBytes", 0)])
                .is_err()
        );
        // Every listed name is one the settings may set.
        for name in Limits::NAMES {
            assert!(
                Limits::default().with_settings([(*name, 1)]).is_ok(),
                "{name}"
            );
        }
        assert_eq!(Limits::NAMES.len(), 9);
    }
}
