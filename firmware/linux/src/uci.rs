//! OpenWrt's UCI form of the configuration (`/etc/config/vngate`), translated into the daemon's TOML.
//!
//! The translation is textual and keeps a map from each TOML line back to the UCI line it came from, so
//! one validator ([`crate::config::parse`]) checks both forms and every error names the UCI file and
//! line. The UCI file has one section per TOML table:
//!
//! ```text
//! config namespace 'namespace'      -> [namespace]   (id, name, subnet, pool, static, lease_time, ...)
//! config daemon 'daemon'            -> [daemon]      (tap, mode, state_dir; enabled and log_level are
//!                                                      the init script's)
//! config overlay 'overlay'          -> [overlay]     (listen, advertise, list peer, storage, founding,
//!                                                      preclaim; `enabled '0'` leaves the table out)
//! config security 'security'        -> [security]    (cert, ca, namespace_doc, revoked, require, list ntp)
//! ```
//!
//! The syntax is libuci's: `config TYPE ['NAME']`, `option NAME VALUE`, `list NAME VALUE`, `package NAME`,
//! `#` comments; values unquoted, in single quotes (literal) or double quotes (backslash escapes), and
//! adjacent pieces join (`'it'\''s'`). Booleans take UCI's words (1/0, yes/no, on/off, true/false,
//! enabled/disabled). Stricter than libuci: an unknown section or option, or one given twice, is an error
//! (as an unknown TOML key is), and multi-line values are refused.

use std::fmt::Write as _;
use std::path::Path;

use crate::config::{Config, ConfigFileError};

/// Whether `text` (read from `path`) is UCI rather than TOML: a `.uci` extension, or a first statement
/// `config TYPE` / `package NAME` (in TOML such a line is a syntax error, so nothing valid is misread).
pub fn looks_like_uci(path: &Path, text: &str) -> bool {
    if path.extension().is_some_and(|e| e == "uci") {
        return true;
    }
    let first = text.lines().map(str::trim).find(|l| !l.is_empty() && !l.starts_with('#'));
    first.is_some_and(|l| {
        let mut words = l.split_whitespace();
        matches!(words.next(), Some("config" | "package"))
            && words.next().is_some_and(|w| !w.starts_with('='))
    })
}

/// A UCI file translated to TOML.
#[derive(Debug, Clone)]
pub struct Translation {
    /// The TOML text.
    pub toml: String,
    /// For each TOML line (0-based), the 1-based UCI line it came from (`None` for the header comment).
    origin: Vec<Option<usize>>,
}

impl Translation {
    /// Rewrite an error about the TOML text into one about the UCI file at `path`.
    fn remap(&self, path: &Path, e: ConfigFileError) -> ConfigFileError {
        ConfigFileError {
            path: path.to_owned(),
            line: e.line.and_then(|l| self.origin.get(l.checked_sub(1)?).copied().flatten()),
            message: e.message.replace("`peers`", "`peer` (list)"),
        }
    }
}

/// Parse the UCI configuration `text` (read from `path`, which labels errors and anchors relative
/// security paths, as for TOML) into the daemon's configuration.
pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigFileError> {
    let t = to_toml(path, text)?;
    crate::config::parse(path, &t.toml).map_err(|e| t.remap(path, e))
}

/// Translate and check: the TOML text when the UCI file gives a usable configuration.
pub fn to_checked_toml(path: &Path, text: &str) -> Result<String, ConfigFileError> {
    let t = to_toml(path, text)?;
    crate::config::parse(path, &t.toml).map_err(|e| t.remap(path, e))?;
    Ok(t.toml)
}

/// How an option's value becomes TOML.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A string.
    Str,
    /// A path: a relative one is made absolute against the UCI file's directory, so the TOML means the
    /// same wherever it is written (the init script writes it to /var/etc).
    Path,
    /// A whole number.
    Int,
    /// A UCI boolean.
    Bool,
    /// A `list` (an array of strings).
    List,
    /// Read by the init script only; not in the TOML.
    InitOnly(Kind2),
    /// `enabled`: when false, the whole section is left out.
    Enabled,
}

/// The check an init-script-only option still gets here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind2 {
    /// A UCI boolean.
    Bool,
    /// Free text.
    Str,
}

/// (UCI section type, TOML table, options as (UCI name, TOML key, kind)).
type Schema = (&'static str, &'static str, &'static [(&'static str, &'static str, Kind)]);

const SCHEMA: &[Schema] = &[
    (
        "namespace",
        "namespace",
        &[
            ("id", "id", Kind::Str),
            ("name", "name", Kind::Str),
            ("subnet", "subnet", Kind::Str),
            ("pool", "pool", Kind::Str),
            ("static", "static", Kind::Str),
            ("lease_time", "lease_time", Kind::Int),
            ("domain", "domain", Kind::Str),
            ("mtu", "mtu", Kind::Int),
            ("egress", "egress", Kind::Bool),
            ("upstream_dns", "upstream_dns", Kind::Str),
        ],
    ),
    (
        "daemon",
        "daemon",
        &[
            ("enabled", "", Kind::InitOnly(Kind2::Bool)),
            ("log_level", "", Kind::InitOnly(Kind2::Str)),
            ("tap", "tap", Kind::Str),
            ("egress_tun", "egress_tun", Kind::Str),
            ("mode", "mode", Kind::Str),
            ("state_dir", "state_dir", Kind::Str),
        ],
    ),
    (
        "overlay",
        "overlay",
        &[
            ("enabled", "", Kind::Enabled),
            ("listen", "listen", Kind::Str),
            ("advertise", "advertise", Kind::Str),
            ("peer", "peers", Kind::List),
            ("storage", "storage", Kind::Bool),
            ("founding", "founding", Kind::Bool),
            ("preclaim", "preclaim", Kind::Int),
        ],
    ),
    (
        "security",
        "security",
        &[
            ("cert", "cert", Kind::Path),
            ("ca", "ca", Kind::Path),
            ("namespace_doc", "namespace_doc", Kind::Path),
            ("revoked", "revoked", Kind::Path),
            ("require", "require", Kind::Bool),
            ("ntp", "ntp", Kind::List),
        ],
    ),
];

/// One statement of a UCI file.
#[derive(Debug, PartialEq, Eq)]
enum Statement {
    Package,
    Config { kind: String },
    Option { name: String, value: String, list: bool },
}

/// A section as read: its type, `config` line and options in file order.
struct Section {
    schema: &'static Schema,
    line: usize,
    /// (name, value, line).
    options: Vec<(&'static str, Kind, &'static str, String, usize)>,
}

/// Translate the UCI `text` (read from `path`) into TOML, checking the UCI syntax, section and option
/// names and value types; the namespace rules are left to [`crate::config::parse`].
pub fn to_toml(path: &Path, text: &str) -> Result<Translation, ConfigFileError> {
    let err = |line: Option<usize>, message: String| ConfigFileError { path: path.to_owned(), line, message };
    let mut sections: Vec<Section> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let words = split_words(raw).map_err(|m| err(Some(line), m.to_owned()))?;
        let Some(st) = statement(&words).map_err(|m| err(Some(line), m))? else { continue };
        match st {
            Statement::Package => {}
            Statement::Config { kind } => {
                let schema = SCHEMA.iter().find(|s| s.0 == kind).ok_or_else(|| {
                    err(
                        Some(line),
                        format!(
                            "unknown section type `{kind}` (expected namespace, daemon, overlay or security)"
                        ),
                    )
                })?;
                if let Some(prev) = sections.iter().find(|s| s.schema.0 == kind) {
                    return Err(err(
                        Some(line),
                        format!("a second `config {kind}` section (the first is on line {})", prev.line),
                    ));
                }
                sections.push(Section { schema, line, options: Vec::new() });
            }
            Statement::Option { name, value, list } => {
                let sec = sections
                    .last_mut()
                    .ok_or_else(|| err(Some(line), format!("`{name}` comes before any `config` section")))?;
                let &(uci, key, kind) = sec.schema.2.iter().find(|o| o.0 == name).ok_or_else(|| {
                    let known: Vec<&str> = sec.schema.2.iter().map(|o| o.0).collect();
                    err(
                        Some(line),
                        format!(
                            "unknown option `{name}` in `config {}` (known: {})",
                            sec.schema.0,
                            known.join(", ")
                        ),
                    )
                })?;
                if list && kind != Kind::List {
                    return Err(err(
                        Some(line),
                        format!("`{name}` takes one value: use `option`, not `list`"),
                    ));
                }
                if kind != Kind::List {
                    if let Some(prev) = sec.options.iter().find(|o| o.0 == uci) {
                        return Err(err(
                            Some(line),
                            format!("`{name}` is given twice (first on line {})", prev.4),
                        ));
                    }
                }
                sec.options.push((uci, kind, key, value, line));
            }
        }
    }
    for required in ["namespace", "daemon"] {
        if !sections.iter().any(|s| s.schema.0 == required) {
            return Err(err(None, format!("no `config {required}` section")));
        }
    }

    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut out = Translation { toml: String::new(), origin: Vec::new() };
    let push = |out: &mut Translation, text: String, origin: Option<usize>| {
        out.toml.push_str(&text);
        out.toml.push('\n');
        out.origin.push(origin);
    };
    push(
        &mut out,
        format!(
            "# Translated by `vngate uci-to-toml` from {}: edit that file, not this one.",
            path.display()
        ),
        None,
    );
    // Tables in the TOML order, whatever the UCI order.
    for schema in SCHEMA {
        let Some(sec) = sections.iter().find(|s| std::ptr::eq(s.schema, schema)) else { continue };
        let enabled = sec.options.iter().find(|o| o.1 == Kind::Enabled);
        if let Some((name, _, _, v, line)) = enabled {
            if !uci_bool(v).ok_or_else(|| not_bool(&err, name, v, *line))? {
                continue;
            }
        }
        push(&mut out, String::new(), Some(sec.line));
        push(&mut out, format!("[{}]", schema.1), Some(sec.line));
        let mut list: Vec<(String, usize)> = Vec::new();
        let mut list_key = "";
        for (name, kind, key, value, line) in &sec.options {
            let rendered = match kind {
                Kind::Enabled => continue,
                Kind::InitOnly(Kind2::Bool) => {
                    uci_bool(value).ok_or_else(|| not_bool(&err, name, value, *line))?;
                    continue;
                }
                Kind::InitOnly(Kind2::Str) => continue,
                Kind::List => {
                    list_key = key;
                    list.push((toml_str(value), *line));
                    continue;
                }
                Kind::Str => toml_str(value),
                Kind::Path => {
                    let p = Path::new(value);
                    if value.is_empty() || p.is_absolute() {
                        toml_str(value)
                    } else {
                        toml_str(&base.join(p).to_string_lossy())
                    }
                }
                Kind::Int => value
                    .parse::<i64>()
                    .map_err(|_| err(Some(*line), format!("`{name}` {value:?} is not a whole number")))?
                    .to_string(),
                Kind::Bool => uci_bool(value).ok_or_else(|| not_bool(&err, name, value, *line))?.to_string(),
            };
            push(&mut out, format!("{key} = {rendered}"), Some(*line));
        }
        if !list.is_empty() {
            // One element per line, so an error in an element names its own UCI line.
            push(&mut out, format!("{list_key} = ["), Some(list[0].1));
            for (v, line) in list {
                push(&mut out, format!("    {v},"), Some(line));
            }
            let last = out.origin.last().copied().flatten();
            push(&mut out, "]".to_owned(), last);
        }
    }
    Ok(out)
}

fn not_bool(
    err: &impl Fn(Option<usize>, String) -> ConfigFileError,
    name: &str,
    value: &str,
    line: usize,
) -> ConfigFileError {
    err(
        Some(line),
        format!("`{name}` {value:?} is not a boolean (1/0, yes/no, on/off, true/false, enabled/disabled)"),
    )
}

/// UCI's boolean words (libuci and /lib/functions.sh `config_get_bool`).
fn uci_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "yes" | "on" | "true" | "enabled" => Some(true),
        "0" | "no" | "off" | "false" | "disabled" => Some(false),
        _ => None,
    }
}

/// A TOML basic string holding `s` exactly.
fn toml_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Split one line into words, with UCI's quoting; a `#` that starts a word starts a comment.
fn split_words(line: &str) -> Result<Vec<String>, &'static str> {
    let mut words = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        match chars.peek() {
            None | Some('#') => return Ok(words),
            Some(_) => {}
        }
        let mut word = String::new();
        while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
            match c {
                '\'' => loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => {
                            return Err("unterminated single quote (multi-line values are not supported)")
                        }
                    }
                },
                '"' => loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c) => word.push(c),
                            None => return Err("a line that ends in `\\` inside double quotes"),
                        },
                        Some(c) => word.push(c),
                        None => {
                            return Err("unterminated double quote (multi-line values are not supported)")
                        }
                    }
                },
                '\\' => match chars.next() {
                    Some(c) => word.push(c),
                    None => return Err("a line that ends in `\\` (multi-line values are not supported)"),
                },
                c => word.push(c),
            }
        }
        words.push(word);
    }
}

/// A UCI identifier: section types and names, option names.
fn is_ident(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// The statement on one line (`None` for a blank or comment line).
fn statement(words: &[String]) -> Result<Option<Statement>, String> {
    let Some(first) = words.first() else { return Ok(None) };
    let args = &words[1..];
    let ident = |w: &String, what: &str| {
        if is_ident(w) {
            Ok(())
        } else {
            Err(format!("{what} {w:?} may only hold letters, digits and `_`"))
        }
    };
    match first.as_str() {
        "package" if args.len() == 1 => Ok(Some(Statement::Package)),
        "package" => Err("`package` takes one name".into()),
        "config" if matches!(args.len(), 1 | 2) => {
            ident(&args[0], "the section type")?;
            if let Some(name) = args.get(1) {
                ident(name, "the section name")?;
            }
            Ok(Some(Statement::Config { kind: args[0].clone() }))
        }
        "config" => Err("`config` takes a type and an optional name: config TYPE ['NAME']".into()),
        kw @ ("option" | "list") if args.len() == 2 => {
            ident(&args[0], "the option name")?;
            Ok(Some(Statement::Option { name: args[0].clone(), value: args[1].clone(), list: kw == "list" }))
        }
        kw @ ("option" | "list") => Err(format!(
            "`{kw}` takes a name and one value: {kw} NAME 'VALUE' (quote a value that holds spaces)"
        )),
        other => Err(format!("unknown keyword `{other}` (expected config, option, list or package)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The package's default /etc/config/vngate (firmware/openwrt/vngate/files/vngate.config), filled
    /// in the way a router's bundle from `hostctl node sign` would be.
    const UCI: &str = include_str!("../tests/fixtures/vngate.uci");
    /// The same configuration written by hand as TOML.
    const TOML: &str = include_str!("../tests/fixtures/vngate-equivalent.toml");
    /// The package's shipped default, as it is installed.
    const SHIPPED: &str = include_str!("../../openwrt/vngate/files/vngate.config");

    fn p(text: &str) -> Result<Config, ConfigFileError> {
        parse(Path::new("/etc/config/vngate"), text)
    }

    #[test]
    fn detection_by_content_and_extension() {
        assert!(looks_like_uci(Path::new("/etc/config/vngate"), UCI));
        assert!(looks_like_uci(Path::new("x.uci"), "[namespace]\n"));
        assert!(!looks_like_uci(Path::new("/etc/vngate/vngate.toml"), TOML));
        assert!(!looks_like_uci(Path::new("t.toml"), "# c\nconfig = 3\n"));
        assert!(looks_like_uci(Path::new("t"), "\n# c\npackage vngate\nconfig daemon\n"));
    }

    #[test]
    fn uci_and_equivalent_toml_give_equal_config() {
        let from_uci = p(UCI).unwrap();
        let from_toml = crate::config::parse(Path::new("/etc/config/vngate.toml"), TOML).unwrap();
        assert_eq!(from_uci, from_toml);
        // And the fixture exercises what it should: the overlay, a list, a relative path.
        let o = from_uci.overlay.as_ref().unwrap();
        assert_eq!(o.peers.len(), 2);
        assert!(!o.storage);
        assert_eq!(from_uci.security.ca, Path::new("/etc/config/keys/ca.pub"));
        assert_eq!(from_uci.security.cert, Path::new("/etc/vngate/node.cert"));
        assert_eq!(from_uci.params.name.as_str(), "demo");
        assert!(!from_uci.params.egress);
    }

    #[test]
    fn translated_toml_parses_alone_to_the_same_config() {
        // What the init script does: the TOML goes to /var/etc and is read from there.
        let toml = to_checked_toml(Path::new("/etc/config/vngate"), UCI).unwrap();
        let again = crate::config::parse(Path::new("/var/etc/vngate.toml"), &toml).unwrap();
        assert_eq!(again, p(UCI).unwrap());
    }

    #[test]
    fn shipped_default_is_valid_and_has_no_overlay() {
        let c = p(SHIPPED).unwrap();
        assert_eq!(c.tap.as_deref(), Some("vn0"));
        assert_eq!(c.overlay, None, "the shipped overlay section is disabled");
        assert_eq!(c.state_dir, Path::new("/etc/vngate"));
    }

    #[test]
    fn overlay_enabled_zero_drops_the_section() {
        let on = p(UCI).unwrap();
        assert!(on.overlay.is_some());
        let off =
            p(&UCI.replace("config overlay 'overlay'\n", "config overlay 'overlay'\n\toption enabled '0'\n"))
                .unwrap();
        assert_eq!(off.overlay, None);
    }

    #[test]
    fn quoting_follows_uci() {
        assert_eq!(split_words("  option name 'a b'  # c").unwrap(), ["option", "name", "a b"]);
        assert_eq!(split_words(r#"option x "q\"d" "#).unwrap(), ["option", "x", "q\"d"]);
        assert_eq!(split_words(r"option x 'it'\''s'").unwrap(), ["option", "x", "it's"]);
        assert_eq!(split_words("option x plain").unwrap(), ["option", "x", "plain"]);
        assert_eq!(split_words("option x ''").unwrap(), ["option", "x", ""]);
        assert!(split_words("option x 'open").is_err());
        assert!(split_words("option x \"open").is_err());
        assert!(split_words("option x end\\").is_err());
        assert_eq!(toml_str("a\"b\\c\u{1}"), r#""a\"b\\c\u0001""#);
    }

    #[test]
    fn each_error_names_the_file_and_uci_line() {
        // (text replaced in the fixture, its replacement, expected line, a word of the message).
        let cases: &[(&str, &str, usize, &str)] = &[
            // Syntax and schema, caught by the translation.
            ("\toption mtu '1400'", "\toption mtu '1400", 9, "unterminated"),
            ("\toption mtu '1400'", "\toption mtu 'abc'", 9, "whole number"),
            ("\toption egress '0'", "\toption egress 'maybe'", 10, "boolean"),
            ("\toption mtu '1400'", "\toption colour 'red'", 9, "unknown option `colour`"),
            ("\toption mtu '1400'", "\tlist mtu '1400'", 9, "use `option`"),
            ("\toption mtu '1400'", "\toption mtu", 9, "a name and one value"),
            (
                "\toption mtu '1400'",
                "\toption mtu '1400'\n\toption mtu '1500'",
                10,
                "twice (first on line 9)",
            ),
            ("config daemon 'daemon'", "config daemon 'dae-mon'", 14, "section name"),
            ("config daemon 'daemon'", "config deamon 'daemon'", 14, "unknown section type `deamon`"),
            ("config daemon 'daemon'", "konfig daemon", 14, "unknown keyword"),
            ("\toption enabled '1'", "\toption enabled 'sure'", 15, "boolean"),
            // Namespace rules, caught by the shared validator and mapped back.
            ("\toption mtu '1400'", "\toption mtu '1200'", 9, "1280"),
            ("\toption subnet '10.250.0.0/16'", "\toption subnet '10.250.0.0/33'", 6, "IPv4 prefix"),
            (
                "\toption pool '10.250.1.10-10.250.1.200'",
                "\toption pool '10.251.0.10-10.251.0.20'",
                7,
                "pool",
            ),
            ("\toption tap 'vn0'", "\toption tap 'a very long name'", 17, "interface name"),
            ("\toption mode 'router'", "\toption mode 'bridge'", 18, "router"),
            ("\tlist peer '10.99.0.11:4789'", "\tlist peer 'nowhere'", 25, "`peer` (list)"),
            ("\toption preclaim '4'", "\toption preclaim '99'", 29, "preclaim"),
            ("\toption cert '/etc/vngate/node.cert'", "\toption cert ''", 33, "empty path"),
            ("\toption state_dir '/etc/vngate'", "\toption state_dir 'etc/vngate'", 19, "absolute"),
        ];
        for &(from, to, line, needle) in cases {
            assert!(UCI.contains(from), "fixture lacks {from:?}");
            let text = UCI.replacen(from, to, 1);
            let e = p(&text).expect_err(to);
            assert_eq!(e.line, Some(line), "{to}: {e}");
            assert!(e.message.contains(needle), "{to}: {e}");
            assert!(e.to_string().starts_with(&format!("/etc/config/vngate:{line}: ")), "{e}");
        }
    }

    #[test]
    fn errors_without_a_line() {
        let e = p("config daemon\n\toption tap 'vn0'\n").unwrap_err();
        assert_eq!((e.line, e.message.as_str()), (None, "no `config namespace` section"));
        let e = p("\toption tap 'vn0'\n").unwrap_err();
        assert_eq!(e.line, Some(1), "{e}");
        assert!(e.message.contains("before any `config`"), "{e}");
        // A missing required option points at its section's `config` line.
        let e = p(&UCI.replace("\toption state_dir '/etc/vngate'\n", "")).unwrap_err();
        assert_eq!(e.line, Some(14), "{e}");
        assert!(e.message.contains("state_dir"), "{e}");
    }

    #[test]
    fn second_section_of_a_type_is_refused() {
        let e = p(&format!("{UCI}\nconfig namespace\n")).unwrap_err();
        assert!(e.message.contains("first is on line 3"), "{e}");
    }
}
