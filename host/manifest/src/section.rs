//! Finding and writing the `octo:manifest` custom section in a component's bytes.

use crate::{Manifest, ManifestError, SECTION_NAME};
use wasmparser::{Chunk, Encoding, Parser, Payload};

/// Why the manifest could not be read from (or written to) a binary.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SectionError {
    /// The bytes are not WebAssembly at all.
    #[error("not a WebAssembly file (no \\0asm header)")]
    NotWasm,
    /// A core module, not a component (built for wasm32-wasip1, or not componentised).
    #[error(
        "this is a core WebAssembly module, not a component; build for wasm32-wasip2 or wrap it with `wasm-tools component new`"
    )]
    CoreModule,
    /// The binary does not parse.
    #[error("the component is malformed: {0}")]
    Malformed(String),
    /// No `octo:manifest` section anywhere.
    #[error(
        "the component has no octo:manifest section; add one with `octo plugins pack COMPONENT --manifest FILE -o OUT`"
    )]
    Missing,
    /// More than one candidate section, so which one counts would be ambiguous.
    #[error(
        "the component has {0} octo:manifest sections in its core modules; keep one, or add a top-level one with `octo plugins pack`"
    )]
    Ambiguous(usize),
    /// More than one top-level section: which one counts would be ambiguous (`pack` replaces, it
    /// never appends).
    #[error(
        "the component has {0} top-level octo:manifest sections; keep one (`octo plugins pack` replaces the old one)"
    )]
    DuplicateTopLevel(usize),
    /// The component is larger than the host accepts.
    #[error(
        "the component is {size} bytes, more than the limit of {limit} bytes (limits.maxComponentBytes)"
    )]
    ComponentTooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// A custom section is larger than the host accepts.
    #[error(
        "the component's custom section {name:?} is {size} bytes, more than the limit of {limit} bytes (limits.maxCustomSectionBytes)"
    )]
    CustomSectionTooLarge {
        /// The section's name.
        name: String,
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The section is there but its contents are not a valid manifest.
    #[error(transparent)]
    Invalid(#[from] ManifestError),
}

/// How large a component, and any custom section in it, may be. Checked before anything else is
/// read, so a 200 MB custom section is refused with one line instead of being installed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ComponentLimits {
    /// The whole component, in bytes (default 128 MiB).
    pub max_component_bytes: usize,
    /// Any one custom section, top-level or in an embedded module, in bytes (default 16 MiB).
    pub max_custom_section_bytes: usize,
}

impl Default for ComponentLimits {
    fn default() -> Self {
        ComponentLimits {
            max_component_bytes: 128 * 1024 * 1024,
            max_custom_section_bytes: 16 * 1024 * 1024,
        }
    }
}

/// Reads the manifest of a component without compiling or instantiating it.
///
/// A top-level `octo:manifest` section wins (that is what `octo plugins pack` writes). Without one, exactly
/// one such section inside an embedded core module is accepted: that is where a `#[link_section]` static
/// of a Rust guest ends up after `wasm-component-ld`. Two top-level sections are an error.
///
/// The default [`ComponentLimits`] apply; [`read_manifest_within`] takes others.
pub fn read_manifest(bytes: &[u8]) -> Result<Manifest, SectionError> {
    read_manifest_within(bytes, &ComponentLimits::default())
}

/// [`read_manifest`], refusing a component or a custom section larger than `limits`.
pub fn read_manifest_within(
    bytes: &[u8],
    limits: &ComponentLimits,
) -> Result<Manifest, SectionError> {
    if !bytes.starts_with(b"\0asm") {
        return Err(SectionError::NotWasm);
    }
    if bytes.len() > limits.max_component_bytes {
        return Err(SectionError::ComponentTooLarge {
            size: bytes.len(),
            limit: limits.max_component_bytes,
        });
    }
    let malformed = |e: wasmparser::BinaryReaderError| SectionError::Malformed(e.message().into());
    let mut top_level: Vec<&[u8]> = Vec::new();
    let mut nested: Vec<&[u8]> = Vec::new();
    // What `Parser::parse_all` does, except that code sections are skipped whole rather than walked
    // function by function: most of a component is code, and reading it costs page faults and time
    // on every `octo run-step` (issue 10).
    let mut parser = Parser::new(0);
    let mut outer: Vec<Parser> = Vec::new();
    let mut rest = bytes;
    loop {
        let (payload, consumed) = match parser.parse(rest, true).map_err(malformed)? {
            Chunk::Parsed { payload, consumed } => (payload, consumed),
            // With `eof` set the parser reports truncation as an error instead.
            Chunk::NeedMoreData(_) => return Err(SectionError::Malformed("truncated".into())),
        };
        rest = &rest[consumed..];
        let depth = outer.len() + 1;
        match payload {
            Payload::Version { encoding, .. } if depth == 1 && encoding == Encoding::Module => {
                return Err(SectionError::CoreModule);
            }
            Payload::ModuleSection { parser: inner, .. }
            | Payload::ComponentSection { parser: inner, .. } => {
                outer.push(std::mem::replace(&mut parser, inner));
            }
            Payload::CodeSectionStart { size, .. } => {
                parser.skip_section();
                rest = rest.get(size as usize..).ok_or_else(|| {
                    SectionError::Malformed("the code section runs past the end".into())
                })?;
            }
            Payload::End(_) => match outer.pop() {
                Some(enclosing) => parser = enclosing,
                None => break,
            },
            Payload::CustomSection(section)
                if section.data().len() > limits.max_custom_section_bytes =>
            {
                return Err(SectionError::CustomSectionTooLarge {
                    name: section.name().to_string(),
                    size: section.data().len(),
                    limit: limits.max_custom_section_bytes,
                });
            }
            Payload::CustomSection(section) if section.name() == SECTION_NAME => {
                if depth == 1 {
                    top_level.push(section.data());
                } else {
                    nested.push(section.data());
                }
            }
            _ => {}
        }
    }
    let data = match (top_level.as_slice(), nested.len()) {
        ([data], _) => data,
        ([_, _, ..], _) => return Err(SectionError::DuplicateTopLevel(top_level.len())),
        ([], 1) => nested[0],
        ([], 0) => return Err(SectionError::Missing),
        ([], n) => return Err(SectionError::Ambiguous(n)),
    };
    Ok(Manifest::from_json(data)?)
}

/// Returns `component` with `manifest` as its top-level `octo:manifest` section, replacing any earlier
/// top-level one. Works for a component from any toolchain (Rust, componentize-py, componentize-js).
pub fn embed_manifest(component: &[u8], manifest: &Manifest) -> Result<Vec<u8>, SectionError> {
    manifest.validate()?;
    if !component.starts_with(b"\0asm") || component.len() < 8 {
        return Err(SectionError::NotWasm);
    }
    if !Parser::is_component(component) {
        return Err(SectionError::CoreModule);
    }
    // Top-level sections are `id:u8 size:leb128-u32 contents`; copy all but old manifest sections.
    let mut out = Vec::with_capacity(component.len() + 256);
    out.extend_from_slice(&component[..8]);
    let mut rest = &component[8..];
    while !rest.is_empty() {
        let id = rest[0];
        let (size, leb_len) = read_leb_u32(&rest[1..])
            .ok_or_else(|| SectionError::Malformed("bad section size".into()))?;
        let start = 1 + leb_len;
        let end = start
            .checked_add(size as usize)
            .filter(|&e| e <= rest.len())
            .ok_or_else(|| {
                SectionError::Malformed("section runs past the end of the file".into())
            })?;
        let is_old_manifest =
            id == 0 && custom_section_name(&rest[start..end]) == Some(SECTION_NAME);
        if !is_old_manifest {
            out.extend_from_slice(&rest[..end]);
        }
        rest = &rest[end..];
    }
    let json = manifest.to_json();
    let mut contents = Vec::with_capacity(json.len() + SECTION_NAME.len() + 5);
    write_leb_u32(&mut contents, SECTION_NAME.len() as u32);
    contents.extend_from_slice(SECTION_NAME.as_bytes());
    contents.extend_from_slice(&json);
    out.push(0);
    write_leb_u32(&mut out, contents.len() as u32);
    out.extend_from_slice(&contents);
    Ok(out)
}

fn custom_section_name(contents: &[u8]) -> Option<&str> {
    let (len, leb_len) = read_leb_u32(contents)?;
    let name = contents.get(leb_len..leb_len + len as usize)?;
    std::str::from_utf8(name).ok()
}

fn read_leb_u32(bytes: &[u8]) -> Option<(u32, usize)> {
    let mut value: u64 = 0;
    for (i, &b) in bytes.iter().take(5).enumerate() {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return u32::try_from(value).ok().map(|v| (v, i + 1));
        }
    }
    None
}

fn write_leb_u32(out: &mut Vec<u8>, mut value: u32) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The smallest component: header only (layer 1, version 0x0d).
    const EMPTY_COMPONENT: &[u8] = b"\0asm\x0d\0\x01\0";
    /// The smallest core module.
    const EMPTY_MODULE: &[u8] = b"\0asm\x01\0\0\0";

    fn manifest(id: &str) -> Manifest {
        Manifest::from_json(
            format!(r#"{{"id":"{id}","version":"1.2.3","kind":"step","apiVersion":"0.1.0"}}"#)
                .as_bytes(),
        )
        .unwrap()
    }

    fn custom_section(name: &str, data: &[u8]) -> Vec<u8> {
        let mut contents = Vec::new();
        write_leb_u32(&mut contents, name.len() as u32);
        contents.extend_from_slice(name.as_bytes());
        contents.extend_from_slice(data);
        let mut out = vec![0];
        write_leb_u32(&mut out, contents.len() as u32);
        out.extend_from_slice(&contents);
        out
    }

    #[test]
    fn embed_then_read() {
        let packed = embed_manifest(EMPTY_COMPONENT, &manifest("one")).unwrap();
        assert_eq!(read_manifest(&packed).unwrap().id, "one");
        // Packing again replaces, never duplicates.
        let repacked = embed_manifest(&packed, &manifest("two")).unwrap();
        assert_eq!(read_manifest(&repacked).unwrap().id, "two");
        assert_eq!(repacked.len(), packed.len());
    }

    #[test]
    fn nested_manifest_in_core_module_is_found() {
        // component { core module { custom "octo:manifest" } }
        let mut module = EMPTY_MODULE.to_vec();
        module.extend(custom_section(SECTION_NAME, &manifest("inner").to_json()));
        let mut component = EMPTY_COMPONENT.to_vec();
        component.push(1); // core module section
        write_leb_u32(&mut component, module.len() as u32);
        component.extend(&module);
        assert_eq!(read_manifest(&component).unwrap().id, "inner");
        // A top-level one wins over the nested one.
        let packed = embed_manifest(&component, &manifest("outer")).unwrap();
        assert_eq!(read_manifest(&packed).unwrap().id, "outer");
    }

    /// component { core module { one function; then `after` } }, cut to `keep` bytes of the module.
    fn component_with_code(after: &[u8], keep: Option<usize>) -> Vec<u8> {
        let mut module = EMPTY_MODULE.to_vec();
        module.extend([1, 4, 1, 0x60, 0, 0]); // type section: () -> ()
        module.extend([3, 2, 1, 0]); // function section: one function of type 0
        module.extend([10, 4, 1, 2, 0, 0x0b]); // code section: one empty body
        module.extend(after);
        module.truncate(keep.unwrap_or(module.len()));
        let mut component = EMPTY_COMPONENT.to_vec();
        component.push(1); // core module section
        write_leb_u32(&mut component, module.len() as u32);
        component.extend(&module);
        component
    }

    #[test]
    fn code_sections_are_skipped_not_lost() {
        let after = custom_section(SECTION_NAME, &manifest("after-code").to_json());
        let component = component_with_code(&after, None);
        assert_eq!(read_manifest(&component).unwrap().id, "after-code");
        // A code section that runs past the end of its module is malformed, not a panic.
        let cut = component_with_code(&after, Some(EMPTY_MODULE.len() + 10 + 3));
        assert!(matches!(
            read_manifest(&cut).unwrap_err(),
            SectionError::Malformed(_)
        ));
    }

    #[test]
    fn errors() {
        assert_eq!(read_manifest(b"hello").unwrap_err(), SectionError::NotWasm);
        assert_eq!(
            read_manifest(EMPTY_MODULE).unwrap_err(),
            SectionError::CoreModule
        );
        assert_eq!(
            read_manifest(EMPTY_COMPONENT).unwrap_err(),
            SectionError::Missing
        );
        assert_eq!(
            embed_manifest(EMPTY_MODULE, &manifest("x")).unwrap_err(),
            SectionError::CoreModule
        );
        let mut bad = EMPTY_COMPONENT.to_vec();
        bad.extend(custom_section(SECTION_NAME, b"{not json"));
        assert!(matches!(
            read_manifest(&bad).unwrap_err(),
            SectionError::Invalid(ManifestError::Json(_))
        ));
        let mut truncated = EMPTY_COMPONENT.to_vec();
        truncated.extend([0, 50, 1]);
        assert!(matches!(
            read_manifest(&truncated).unwrap_err(),
            SectionError::Malformed(_)
        ));
        assert!(matches!(
            embed_manifest(&truncated, &manifest("x")).unwrap_err(),
            SectionError::Malformed(_)
        ));
    }

    #[test]
    fn two_top_level_sections_are_refused() {
        let mut twice = embed_manifest(EMPTY_COMPONENT, &manifest("one")).unwrap();
        twice.extend(custom_section(SECTION_NAME, &manifest("two").to_json()));
        assert_eq!(
            read_manifest(&twice).unwrap_err(),
            SectionError::DuplicateTopLevel(2)
        );
        // Packing it again leaves one.
        let repacked = embed_manifest(&twice, &manifest("three")).unwrap();
        assert_eq!(read_manifest(&repacked).unwrap().id, "three");
    }

    #[test]
    fn component_and_custom_section_sizes_are_limited() {
        let limits = ComponentLimits {
            max_component_bytes: 4096,
            max_custom_section_bytes: 1024,
        };
        let packed = embed_manifest(EMPTY_COMPONENT, &manifest("one")).unwrap();
        assert_eq!(read_manifest_within(&packed, &limits).unwrap().id, "one");
        let mut big_section = packed.clone();
        big_section.extend(custom_section("padding", &[0; 2000]));
        let err = read_manifest_within(&big_section, &limits).unwrap_err();
        assert_eq!(
            err,
            SectionError::CustomSectionTooLarge {
                name: "padding".into(),
                size: 2000,
                limit: 1024
            }
        );
        assert!(
            err.to_string().contains("limits.maxCustomSectionBytes"),
            "{err}"
        );
        let mut big = packed.clone();
        for _ in 0..5 {
            big.extend(custom_section("padding", &[0; 1000]));
        }
        assert!(matches!(
            read_manifest_within(&big, &limits).unwrap_err(),
            SectionError::ComponentTooLarge { limit: 4096, .. }
        ));
        // The defaults accept the small component and refuse a 20 MB custom section.
        let mut huge = packed;
        huge.extend(custom_section("padding", &vec![0; 20 << 20]));
        assert!(matches!(
            read_manifest(&huge).unwrap_err(),
            SectionError::CustomSectionTooLarge { .. }
        ));
    }

    #[test]
    fn leb_round_trip() {
        for v in [0u32, 1, 127, 128, 300, 16_383, 16_384, u32::MAX] {
            let mut buf = Vec::new();
            write_leb_u32(&mut buf, v);
            assert_eq!(read_leb_u32(&buf), Some((v, buf.len())));
        }
    }
}
