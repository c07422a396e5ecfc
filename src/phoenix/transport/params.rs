//! Connect params: query strings parsed with Plug's nested-query rules.
//!
//! `a=1` → `{"a":"1"}`; `a[b]=c` → `{"a":{"b":"c"}}`; `a[]=1&a[]=2` → `{"a":["1","2"]}`;
//! `+` is a space and `%XX` is decoded. Every value is a string. Later keys win on conflict.
//!
//! The query comes from a stranger, so the parser is bounded: it walks the nesting with a loop
//! (never one recursion per `[..]`), and refuses a query over its [`QueryLimits`] (longer than
//! `max_bytes`, with more than `max_pairs` pairs or nested deeper than `max_depth`); the
//! transports answer 400.

use serde_json::{Map, Value};

/// The bounds a connect query string must stay within (settings `--max-query-*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueryLimits {
    /// Longest accepted query string in bytes.
    pub max_bytes: usize,
    /// Most `key=value` pairs in one query.
    pub max_pairs: usize,
    /// Deepest nesting of one key (`a[b][c]` is 3).
    pub max_depth: usize,
}

impl Default for QueryLimits {
    fn default() -> Self {
        QueryLimits {
            // Cowboy's request-line limit is 8 KB; we allow more for a long auth token.
            max_bytes: 16 * 1024,
            // Plug counts pairs too.
            max_pairs: 256,
            // Far more than any client nests, far less than a stack-hungry attacker wants.
            max_depth: 32,
        }
    }
}

/// Why a query string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamsError {
    /// Longer than [`QueryLimits::max_bytes`].
    #[error("query string of {len} bytes (limit {limit})")]
    TooLong {
        /// The query's length.
        len: usize,
        /// The limit it broke.
        limit: usize,
    },
    /// More than [`QueryLimits::max_pairs`] pairs.
    #[error("more than {0} query parameters")]
    TooManyPairs(usize),
    /// A key nested deeper than [`QueryLimits::max_depth`].
    #[error("a query parameter nested deeper than {0} levels")]
    TooDeep(usize),
}

/// Decodes `%XX` escapes and `+` (as a space); invalid escapes are kept literally.
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Splits `a[b][]` into `["a", "b", ""]` (an empty segment means "append to a list").
fn key_path(key: &str) -> Vec<String> {
    let Some(open) = key.find('[') else {
        return vec![key.to_owned()];
    };
    if open == 0 {
        return vec![key.to_owned()];
    }
    let mut path = vec![key[..open].to_owned()];
    let mut rest = &key[open..];
    while let Some(stripped) = rest.strip_prefix('[') {
        let Some(close) = stripped.find(']') else {
            // Unbalanced bracket: Plug keeps the remainder as part of the last key.
            if let Some(last) = path.last_mut() {
                last.push_str(rest);
            }
            return path;
        };
        path.push(stripped[..close].to_owned());
        rest = &stripped[close + 1..];
    }
    path
}

/// Stores `value` at `path` under `target`, walking down one level per segment in a loop.
fn insert(target: &mut Value, path: &[String], value: String) {
    let mut target = target;
    let mut path = path;
    while let Some((head, tail)) = path.split_first() {
        if head.is_empty() {
            // List segment.
            if !target.is_array() {
                *target = Value::Array(Vec::new());
            }
            let Value::Array(list) = target else { return };
            if tail.is_empty() {
                list.push(Value::String(value));
                return;
            }
            // `a[][b]=1`: add to the last map unless it already has that key (Plug/Rack rule).
            let needs_new = match list.last() {
                Some(Value::Object(m)) => tail.first().is_none_or(|k| m.contains_key(k)),
                _ => true,
            };
            if needs_new {
                list.push(Value::Object(Map::new()));
            }
            let Some(last) = list.last_mut() else { return };
            target = last;
            path = tail;
            continue;
        }
        if !target.is_object() {
            *target = Value::Object(Map::new());
        }
        let Value::Object(map) = target else { return };
        if tail.is_empty() {
            map.insert(head.clone(), Value::String(value));
            return;
        }
        target = map.entry(head.clone()).or_insert(Value::Null);
        path = tail;
    }
}

/// Parses a raw query string into a JSON object of params; refuses one over `limits`.
pub fn parse_query(query: &str, limits: &QueryLimits) -> Result<Value, ParamsError> {
    if query.len() > limits.max_bytes {
        return Err(ParamsError::TooLong {
            len: query.len(),
            limit: limits.max_bytes,
        });
    }
    let mut root = Value::Object(Map::new());
    for (n, pair) in query.split('&').filter(|p| !p.is_empty()).enumerate() {
        if n >= limits.max_pairs {
            return Err(ParamsError::TooManyPairs(limits.max_pairs));
        }
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let key = percent_decode(k);
        if key.is_empty() {
            continue;
        }
        let path = key_path(&key);
        if path.len() > limits.max_depth {
            return Err(ParamsError::TooDeep(limits.max_depth));
        }
        insert(&mut root, &path, percent_decode(v));
    }
    Ok(root)
}

#[cfg(test)]
mod tests {
    use super::{ParamsError, QueryLimits};
    use serde_json::{Value, json};

    fn parse_query(query: &str) -> Value {
        super::parse_query(query, &QueryLimits::default()).expect("within the limits")
    }

    fn refusal(query: &str, limits: &QueryLimits) -> ParamsError {
        super::parse_query(query, limits).expect_err("over the limits")
    }

    #[test]
    fn flat_params_are_strings() {
        assert_eq!(
            parse_query("user_id=1001&vsn=2.0.0"),
            json!({"user_id":"1001","vsn":"2.0.0"})
        );
    }

    #[test]
    fn nested_maps_and_lists_follow_plug() {
        assert_eq!(
            parse_query("user%5Bid%5D=7&user[name]=a+b"),
            json!({"user":{"id":"7","name":"a b"}})
        );
        assert_eq!(parse_query("a[]=1&a[]=2"), json!({"a":["1","2"]}));
        assert_eq!(
            parse_query("a[][x]=1&a[][y]=2&a[][x]=3"),
            json!({"a":[{"x":"1","y":"2"},{"x":"3"}]})
        );
        assert_eq!(parse_query("vsn[]=2.0.0"), json!({"vsn":["2.0.0"]}));
    }

    #[test]
    fn odd_input_does_not_panic() {
        assert_eq!(
            parse_query("%&=&a=%zz&b=%4"),
            json!({"%":"","a":"%zz","b":"%4"})
        );
        assert_eq!(parse_query("a[b=1"), json!({"a[b":"1"}));
    }

    #[test]
    fn deep_nesting_is_refused_and_a_long_one_is_refused_by_length() {
        let query = format!("a{}=1", "[a]".repeat(5000));
        assert_eq!(
            refusal(&query, &QueryLimits::default()),
            ParamsError::TooDeep(32)
        );
        // The attack of issue 8: 9,000 levels in a 27 KB URL.
        let query = format!("a{}=1", "[a]".repeat(9000));
        assert_eq!(
            refusal(&query, &QueryLimits::default()),
            ParamsError::TooLong {
                len: 27003,
                limit: 16384
            }
        );
    }

    #[test]
    fn inserting_a_million_levels_does_not_recurse() {
        let path = vec!["a".to_owned(); 1_000_000];
        let mut root = json!({});
        super::insert(&mut root, &path, "1".into());
        // Dropping a deep serde_json value recurses too: take it apart level by level.
        let mut depth = 0;
        let mut value = root;
        while let Value::Object(mut map) = value {
            value = map.remove("a").unwrap_or(Value::Null);
            depth += 1;
        }
        assert_eq!((depth, value), (1_000_000, json!("1")));
    }

    #[test]
    fn the_deepest_allowed_key_still_parses() {
        let query = format!("a{}=1", "[a]".repeat(QueryLimits::default().max_depth - 1));
        let mut value = parse_query(&query);
        for _ in 0..QueryLimits::default().max_depth {
            value = value["a"].take();
        }
        assert_eq!(value, json!("1"));
    }

    #[test]
    fn too_many_pairs_and_too_long_queries_are_refused() {
        let many = vec!["a=1"; QueryLimits::default().max_pairs + 1].join("&");
        assert_eq!(
            refusal(&many, &QueryLimits::default()),
            ParamsError::TooManyPairs(256)
        );
        let long = "a=".to_owned() + &"x".repeat(QueryLimits::default().max_bytes);
        assert_eq!(
            refusal(&long, &QueryLimits::default()),
            ParamsError::TooLong {
                len: 16386,
                limit: 16384
            }
        );
    }

    #[test]
    fn an_operator_can_tighten_or_widen_each_limit() {
        let tight = QueryLimits {
            max_bytes: 20,
            max_pairs: 2,
            max_depth: 2,
        };
        assert_eq!(
            refusal("token=0123456789abcdef", &tight),
            ParamsError::TooLong { len: 22, limit: 20 }
        );
        assert_eq!(refusal("a=1&b=2&c=3", &tight), ParamsError::TooManyPairs(2));
        assert_eq!(refusal("a[b][c]=1", &tight), ParamsError::TooDeep(2));
        assert_eq!(
            super::parse_query("a[b]=1&c=2", &tight),
            Ok(json!({"a":{"b":"1"},"c":"2"}))
        );
        let wide = QueryLimits {
            max_depth: 100,
            ..QueryLimits::default()
        };
        let deep = format!("a{}=1", "[a]".repeat(60));
        assert!(super::parse_query(&deep, &wide).is_ok());
        assert_eq!(
            refusal(&deep, &QueryLimits::default()),
            ParamsError::TooDeep(32)
        );
    }
}
