//! A one-line JSON object writer: enough for the probe's flat output, without a serde dependency.

use std::fmt::Write;

/// An object being written; `end` closes it.
pub struct Json {
    out: String,
    first: bool,
}

impl Json {
    pub fn obj() -> Json {
        Json { out: String::from("{"), first: true }
    }

    fn key(mut self, k: &str) -> Json {
        if !self.first {
            self.out.push(',');
        }
        self.first = false;
        quote(&mut self.out, k);
        self.out.push(':');
        self
    }

    pub fn str(self, k: &str, v: &str) -> Json {
        let mut j = self.key(k);
        quote(&mut j.out, v);
        j
    }

    pub fn num(self, k: &str, v: u64) -> Json {
        let mut j = self.key(k);
        let _ = write!(j.out, "{v}");
        j
    }

    pub fn strs(self, k: &str, vs: impl Iterator<Item = String>) -> Json {
        let mut j = self.key(k);
        j.out.push('[');
        for (i, v) in vs.enumerate() {
            if i > 0 {
                j.out.push(',');
            }
            quote(&mut j.out, &v);
        }
        j.out.push(']');
        j
    }

    /// Insert already-encoded JSON (a nested object).
    pub fn raw(self, k: &str, v: &str) -> Json {
        let mut j = self.key(k);
        j.out.push_str(v);
        j
    }

    pub fn end(mut self) -> String {
        self.out.push('}');
        self.out
    }
}

fn quote(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_nests() {
        let inner = Json::obj().num("26", 1380).end();
        let s = Json::obj()
            .str("a", "q\"b\\\n")
            .strs("l", ["x".to_string(), "y".to_string()].into_iter())
            .raw("o", &inner)
            .end();
        assert_eq!(s, r#"{"a":"q\"b\\\u000a","l":["x","y"],"o":{"26":1380}}"#);
    }
}
