//! Indents a compact JSON document for people *without re-encoding it*: only whitespace outside
//! strings is added, so keys keep their wire order and every value keeps its exact bytes. (Parsing
//! into `serde_json::Value` and printing that would sort keys and could reformat numbers — then
//! the preview would no longer show the exact body.)

const INDENT: &str = "  ";

/// `raw` indented two spaces per level. Input that is not JSON comes back with the same
/// characters, just oddly indented: this never fails and never drops a byte.
pub fn indent_json(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len() + raw.len() / 4);
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    let mut chars = raw.chars().peekable();
    let newline = |out: &mut String, depth: usize| {
        out.push('\n');
        for _ in 0..depth {
            out.push_str(INDENT);
        }
    };
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => {
                in_string = true;
                out.push(c);
            }
            '{' | '[' => {
                out.push(c);
                // `{}` and `[]` stay on one line.
                let close = if c == '{' { '}' } else { ']' };
                if chars.peek() == Some(&close) {
                    out.push(close);
                    chars.next();
                } else {
                    depth += 1;
                    newline(&mut out, depth);
                }
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(c);
            }
            ',' => {
                out.push(c);
                newline(&mut out, depth);
            }
            ':' => out.push_str(": "),
            c if c.is_whitespace() => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Removes the whitespace `indent_json` adds (outside strings), to compare with the input.
    fn squeeze(s: &str) -> String {
        let (mut out, mut in_string, mut escaped) = (String::new(), false, false);
        for c in s.chars() {
            if in_string {
                out.push(c);
                match (escaped, c) {
                    (true, _) => escaped = false,
                    (false, '\\') => escaped = true,
                    (false, '"') => in_string = false,
                    _ => {}
                }
            } else if c == '"' {
                in_string = true;
                out.push(c);
            } else if !c.is_whitespace() {
                out.push(c);
            }
        }
        out
    }

    #[test]
    fn adds_only_whitespace_and_keeps_key_order() {
        let cases = [
            r#"{"type":"transition","elements":[{"type":"customer","customer_id":"u1","attributes":{"z":1,"a":"x, {y}: [z]"}}]}"#,
            r#"{"a":"quote \" and backslash \\","b":[],"c":{},"d":[1,2.50,-3e2,true,null]}"#,
            r#"{"k":"\\"}"#,
            r#"[]"#,
            r#"{"unicode":"café ✓ \u00e9"}"#,
        ];
        for raw in cases {
            let pretty = indent_json(raw);
            assert_eq!(squeeze(&pretty), raw);
            let a: serde_json::Value = serde_json::from_str(raw).unwrap();
            let b: serde_json::Value = serde_json::from_str(&pretty).unwrap();
            assert_eq!(a, b, "{pretty}");
        }
        assert_eq!(
            indent_json(r#"{"z":1,"a":[2]}"#),
            "{\n  \"z\": 1,\n  \"a\": [\n    2\n  ]\n}"
        );
        assert_eq!(
            indent_json(r#"{"b":[],"c":{}}"#),
            "{\n  \"b\": [],\n  \"c\": {}\n}"
        );
    }
}
