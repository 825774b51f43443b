//! Values between JSON and Postgres's text format, as Neon's SQL-over-HTTP
//! maps them: parameters go to the server as text (never into the SQL),
//! and result values come back as JSON by their column's type (or, with
//! `Neon-Raw-Text-Output: true`, as the server's text).

use serde_json::{Map, Number, Value};

const BOOL: u32 = 16;
const INT2: u32 = 21;
const INT4: u32 = 23;
const FLOAT4: u32 = 700;
const FLOAT8: u32 = 701;
const JSON: u32 = 114;
const JSONB: u32 = 3802;

/// A parameter as the text Postgres parses (`None`: NULL). Arrays become
/// array literals (`{1,"a b",NULL}`), objects JSON text.
pub fn param_text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::Array(items) => {
            let mut out = String::new();
            array_literal(items, &mut out);
            Some(out)
        }
        Value::Object(_) => Some(v.to_string()),
    }
}

fn array_literal(items: &[Value], out: &mut String) {
    out.push('{');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        match item {
            Value::Array(inner) => array_literal(inner, out),
            Value::Null => out.push_str("NULL"),
            other => {
                let text = param_text(other).unwrap_or_default();
                out.push('"');
                for c in text.chars() {
                    if c == '"' || c == '\\' {
                        out.push('\\');
                    }
                    out.push(c);
                }
                out.push('"');
            }
        }
    }
    out.push('}');
}

/// A result value of a column of type `oid` (`raw`: the text as it is).
pub fn to_json(oid: u32, text: Option<&str>, raw: bool) -> Value {
    let Some(text) = text else {
        return Value::Null;
    };
    if raw {
        return Value::String(text.to_owned());
    }
    match element_of(oid) {
        Some(element) => match parse_array(text) {
            Some(array) => array_json(&array, element),
            None => Value::String(text.to_owned()),
        },
        None => scalar(oid, text),
    }
}

fn scalar(oid: u32, text: &str) -> Value {
    match oid {
        BOOL => Value::Bool(text == "t"),
        INT2 | INT4 => text
            .parse::<i64>()
            .map_or_else(|_| Value::String(text.to_owned()), Value::from),
        // NaN and the infinities have no JSON number: strings, as Neon.
        FLOAT4 | FLOAT8 => text
            .parse::<f64>()
            .ok()
            .and_then(Number::from_f64)
            .map_or_else(|| Value::String(text.to_owned()), Value::Number),
        JSON | JSONB => {
            serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()))
        }
        _ => Value::String(text.to_owned()),
    }
}

/// The element type of a built-in array type (pg_type's typelem).
fn element_of(oid: u32) -> Option<u32> {
    Some(match oid {
        1000 => BOOL,
        1005 => INT2,
        1007 => INT4,
        1021 => FLOAT4,
        1022 => FLOAT8,
        199 => JSON,
        3807 => JSONB,
        // Elements that stay strings: text, name, varchar, bpchar, char,
        // int8, numeric, oid, bytea, dates and times, uuid, inet, interval.
        1009 | 1003 | 1015 | 1014 | 1002 | 1016 | 1231 | 1028 | 1001 | 1115 | 1182 | 1183
        | 1185 | 1270 | 2951 | 1041 | 651 | 1187 => 25,
        _ => return None,
    })
}

/// A parsed array literal: nested arrays, elements as text (`None`: NULL).
#[derive(Debug, PartialEq)]
enum Element {
    Text(Option<String>),
    Array(Vec<Element>),
}

fn array_json(a: &Element, element: u32) -> Value {
    match a {
        Element::Text(t) => to_json(element, t.as_deref(), false),
        Element::Array(items) => {
            Value::Array(items.iter().map(|i| array_json(i, element)).collect())
        }
    }
}

/// Parses Postgres's array output (`{1,2}`, `{{"a b",NULL},{c,d}}`,
/// `[0:1]={1,2}`); `None` if it is not one.
fn parse_array(text: &str) -> Option<Element> {
    // Explicit bounds come first when a lower bound is not 1.
    let text = match text.strip_prefix('[') {
        Some(_) => &text[text.find('=')? + 1..],
        None => text,
    };
    let mut chars = text.chars().peekable();
    let array = parse_level(&mut chars)?;
    chars.next().is_none().then_some(array)
}

fn parse_level(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Option<Element> {
    if chars.next()? != '{' {
        return None;
    }
    let mut items = Vec::new();
    if chars.peek() == Some(&'}') {
        chars.next();
        return Some(Element::Array(items));
    }
    loop {
        let item = match chars.peek()? {
            '{' => parse_level(chars)?,
            '"' => {
                chars.next();
                let mut s = String::new();
                loop {
                    match chars.next()? {
                        '\\' => s.push(chars.next()?),
                        '"' => break,
                        c => s.push(c),
                    }
                }
                Element::Text(Some(s))
            }
            _ => {
                let mut s = String::new();
                while let Some(&c) = chars.peek() {
                    if c == ',' || c == '}' {
                        break;
                    }
                    s.push(c);
                    chars.next();
                }
                let s = s.trim();
                match s.eq_ignore_ascii_case("NULL") {
                    true => Element::Text(None),
                    false => Element::Text(Some(s.to_owned())),
                }
            }
        };
        items.push(item);
        match chars.next()? {
            ',' => continue,
            '}' => return Some(Element::Array(items)),
            _ => return None,
        }
    }
}

/// A row as a JSON object (column name -> value); a later column of the
/// same name wins, as in Neon's driver.
pub fn row_object(names: &[String], values: Vec<Value>) -> Value {
    let mut m = Map::with_capacity(names.len());
    for (name, v) in names.iter().zip(values) {
        m.insert(name.clone(), v);
    }
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn scalars_map_by_type() {
        assert_eq!(to_json(BOOL, Some("t"), false), json!(true));
        assert_eq!(to_json(BOOL, Some("f"), false), json!(false));
        assert_eq!(to_json(INT4, Some("-42"), false), json!(-42));
        assert_eq!(to_json(INT2, Some("7"), false), json!(7));
        assert_eq!(
            to_json(20, Some("9007199254740993"), false),
            json!("9007199254740993")
        );
        assert_eq!(to_json(1700, Some("1.50"), false), json!("1.50"));
        assert_eq!(to_json(FLOAT8, Some("1.5"), false), json!(1.5));
        assert_eq!(to_json(FLOAT8, Some("NaN"), false), json!("NaN"));
        assert_eq!(
            to_json(FLOAT4, Some("-Infinity"), false),
            json!("-Infinity")
        );
        assert_eq!(
            to_json(JSONB, Some(r#"{"a": [1, null]}"#), false),
            json!({"a": [1, null]})
        );
        assert_eq!(to_json(25, None, false), Value::Null);
        assert_eq!(to_json(INT4, Some("5"), true), json!("5"));
    }

    #[test]
    fn arrays_nest_and_map_their_elements() {
        assert_eq!(
            to_json(1007, Some("{1,2,NULL}"), false),
            json!([1, 2, null])
        );
        assert_eq!(
            to_json(1007, Some("{{1,2},{3,4}}"), false),
            json!([[1, 2], [3, 4]])
        );
        assert_eq!(
            to_json(1009, Some(r#"{"a b","c\"d",NULL,"NULL",e}"#), false),
            json!(["a b", "c\"d", null, "NULL", "e"])
        );
        assert_eq!(to_json(1007, Some("[0:1]={5,6}"), false), json!([5, 6]));
        assert_eq!(to_json(1000, Some("{t,f}"), false), json!([true, false]));
        assert_eq!(to_json(1007, Some("{}"), false), json!([]));
        assert_eq!(
            to_json(3807, Some(r#"{"{\"a\": 1}"}"#), false),
            json!([{"a": 1}])
        );
        // Not an array literal after all: the text.
        assert_eq!(to_json(1007, Some("{1,2"), false), json!("{1,2"));
    }

    #[test]
    fn parameters_are_text() {
        assert_eq!(param_text(&json!(null)), None);
        assert_eq!(param_text(&json!("x'; DROP")), Some("x'; DROP".into()));
        assert_eq!(param_text(&json!(12)), Some("12".into()));
        assert_eq!(param_text(&json!(true)), Some("true".into()));
        assert_eq!(
            param_text(&json!([1, "a\"b", null, [2]])),
            Some(r#"{"1","a\"b",NULL,{"2"}}"#.into())
        );
        assert_eq!(param_text(&json!({"k": 1})), Some(r#"{"k":1}"#.into()));
    }
}
