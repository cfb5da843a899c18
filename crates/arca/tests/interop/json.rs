//! A minimal JSON reader for the clients' `--json` output (std only). Numbers keep their text so
//! byte offsets and sizes stay exact.

#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    Num(String),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

impl Json {
    pub fn parse(text: &str) -> Json {
        let mut p = Parser {
            s: text.as_bytes(),
            i: 0,
        };
        let v = p.value();
        p.ws();
        assert!(p.i == p.s.len(), "trailing text after JSON at byte {}", p.i);
        v
    }

    /// The member `key` of an object; panics (naming the key) when absent.
    pub fn get(&self, key: &str) -> &Json {
        self.try_get(key)
            .unwrap_or_else(|| panic!("JSON has no member {key:?}: {self:?}"))
    }

    pub fn try_get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Obj(m) => m.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn arr(&self) -> &[Json] {
        match self {
            Json::Arr(a) => a,
            _ => panic!("not a JSON array: {self:?}"),
        }
    }

    pub fn u64(&self) -> u64 {
        match self {
            Json::Num(n) => n
                .parse()
                .unwrap_or_else(|_| panic!("not an unsigned integer: {n}")),
            _ => panic!("not a JSON number: {self:?}"),
        }
    }

    pub fn bool(&self) -> bool {
        match self {
            Json::Bool(b) => *b,
            _ => panic!("not a JSON boolean: {self:?}"),
        }
    }

    pub fn str(&self) -> &str {
        match self {
            Json::Str(s) => s,
            _ => panic!("not a JSON string: {self:?}"),
        }
    }
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }

    fn peek(&mut self) -> u8 {
        self.ws();
        *self
            .s
            .get(self.i)
            .unwrap_or_else(|| panic!("JSON ends early"))
    }

    fn expect(&mut self, c: u8) {
        assert_eq!(
            self.peek(),
            c,
            "JSON: expected {:?} at byte {}",
            c as char,
            self.i
        );
        self.i += 1;
    }

    fn literal(&mut self, word: &str, v: Json) -> Json {
        assert!(
            self.s[self.i..].starts_with(word.as_bytes()),
            "JSON: bad literal at byte {}",
            self.i
        );
        self.i += word.len();
        v
    }

    fn value(&mut self) -> Json {
        match self.peek() {
            b'{' => {
                self.i += 1;
                let mut m = Vec::new();
                if self.peek() == b'}' {
                    self.i += 1;
                    return Json::Obj(m);
                }
                loop {
                    self.ws();
                    let k = self.string();
                    self.expect(b':');
                    m.push((k, self.value()));
                    if self.peek() == b',' {
                        self.i += 1;
                    } else {
                        self.expect(b'}');
                        return Json::Obj(m);
                    }
                }
            }
            b'[' => {
                self.i += 1;
                let mut a = Vec::new();
                if self.peek() == b']' {
                    self.i += 1;
                    return Json::Arr(a);
                }
                loop {
                    a.push(self.value());
                    if self.peek() == b',' {
                        self.i += 1;
                    } else {
                        self.expect(b']');
                        return Json::Arr(a);
                    }
                }
            }
            b'"' => Json::Str(self.string()),
            b't' => self.literal("true", Json::Bool(true)),
            b'f' => self.literal("false", Json::Bool(false)),
            b'n' => self.literal("null", Json::Null),
            _ => {
                let start = self.i;
                while self.i < self.s.len()
                    && matches!(
                        self.s[self.i],
                        b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9'
                    )
                {
                    self.i += 1;
                }
                assert!(self.i > start, "JSON: unexpected byte at {start}");
                Json::Num(String::from_utf8_lossy(&self.s[start..self.i]).into_owned())
            }
        }
    }

    fn string(&mut self) -> String {
        self.expect(b'"');
        let mut out = Vec::new();
        loop {
            let c = *self.s.get(self.i).expect("JSON: unterminated string");
            self.i += 1;
            match c {
                b'"' => return String::from_utf8_lossy(&out).into_owned(),
                b'\\' => {
                    let e = self.s[self.i];
                    self.i += 1;
                    match e {
                        b'n' => out.push(b'\n'),
                        b't' => out.push(b'\t'),
                        b'r' => out.push(b'\r'),
                        b'b' => out.push(8),
                        b'f' => out.push(12),
                        b'u' => {
                            let hex = std::str::from_utf8(&self.s[self.i..self.i + 4]).unwrap();
                            self.i += 4;
                            let ch = u32::from_str_radix(hex, 16)
                                .ok()
                                .and_then(char::from_u32)
                                .unwrap_or('\u{fffd}');
                            out.extend_from_slice(ch.to_string().as_bytes());
                        }
                        other => out.push(other),
                    }
                }
                _ => out.push(c),
            }
        }
    }
}

#[test]
fn parses_client_output_shapes() {
    let v = Json::parse(
        r#"{"a": [1, 18446744073709551615, {"b": true, "c": null}], "s": "x\"\u0041\ty", "e": {}}"#,
    );
    assert_eq!(v.get("a").arr()[1].u64(), u64::MAX);
    assert!(v.get("a").arr()[2].get("b").bool());
    assert_eq!(v.get("a").arr()[2].get("c"), &Json::Null);
    assert_eq!(v.get("s").str(), "x\"A\ty");
    assert_eq!(v.get("e"), &Json::Obj(vec![]));
}
