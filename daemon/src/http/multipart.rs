//! `multipart/form-data` (RFC 7578) over a body already held in memory.
//!
//! The upload is read whole anyway (the audio decoder needs all of it), so parts are slices of
//! that buffer rather than a second streaming parser. Anything malformed, including a body cut
//! off before its closing boundary, is a [`MultipartError`].

use axum::body::Bytes;

/// Longest boundary RFC 2046 allows.
const MAX_BOUNDARY: usize = 70;
/// Most bytes of headers one part may have.
const MAX_PART_HEADERS: usize = 16 * 1024;

/// The body is not well-formed `multipart/form-data`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MultipartError {
    #[error("the request is not multipart/form-data (Content-Type: {0})")]
    NotMultipart(String),
    #[error("the Content-Type has no valid multipart boundary")]
    NoBoundary,
    #[error("the body does not start with the multipart boundary")]
    NoFirstBoundary,
    #[error("the multipart body ends before its closing boundary (truncated upload?)")]
    Truncated,
    #[error("a multipart part has malformed headers: {0}")]
    BadHeaders(String),
    #[error("a multipart part has no `Content-Disposition: form-data; name=...` header")]
    NoName,
}

/// One form field.
#[derive(Debug, Clone, PartialEq)]
pub struct Part {
    pub name: String,
    /// Set for file fields.
    pub filename: Option<String>,
    pub data: Bytes,
}

impl Part {
    /// The value as text (form fields other than files).
    pub fn text(&self) -> Option<&str> {
        std::str::from_utf8(&self.data).ok()
    }
}

/// The boundary of a `multipart/form-data` Content-Type.
pub fn boundary(content_type: &str) -> Result<String, MultipartError> {
    let (mime, params) = content_type.split_once(';').unwrap_or((content_type, ""));
    if !mime.trim().eq_ignore_ascii_case("multipart/form-data") {
        return Err(MultipartError::NotMultipart(content_type.to_owned()));
    }
    let boundary = parameters(params)
        .into_iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("boundary"))
        .map(|(_, v)| v)
        .ok_or(MultipartError::NoBoundary)?;
    if boundary.is_empty() || boundary.len() > MAX_BOUNDARY {
        return Err(MultipartError::NoBoundary);
    }
    Ok(boundary)
}

/// Every part of `body`, in order.
pub fn parse(body: &Bytes, boundary: &str) -> Result<Vec<Part>, MultipartError> {
    let delimiter = format!("--{boundary}");
    let delimiter = delimiter.as_bytes();
    // The first delimiter may follow a preamble, which ends with CRLF.
    let mut at = if body.starts_with(delimiter) {
        delimiter.len()
    } else {
        let mut with_crlf = b"\r\n".to_vec();
        with_crlf.extend_from_slice(delimiter);
        find(body, &with_crlf, 0).ok_or(MultipartError::NoFirstBoundary)? + with_crlf.len()
    };
    let mut close = b"\r\n".to_vec();
    close.extend_from_slice(delimiter);
    let mut parts = Vec::new();
    loop {
        let rest = &body[at..];
        if rest.starts_with(b"--") {
            return Ok(parts);
        }
        // Transport padding (spaces, tabs) may follow a delimiter before its CRLF.
        let pad = rest
            .iter()
            .take_while(|b| matches!(b, b' ' | b'\t'))
            .count();
        if !rest[pad..].starts_with(b"\r\n") {
            return Err(if rest[pad..].is_empty() {
                MultipartError::Truncated
            } else {
                MultipartError::BadHeaders("no line break after the boundary".into())
            });
        }
        let headers_start = at + pad + 2;
        let headers_end = match find(body, b"\r\n\r\n", headers_start) {
            Some(i) if i - headers_start <= MAX_PART_HEADERS => i,
            Some(_) => return Err(MultipartError::BadHeaders("headers too long".into())),
            None if body.len() - headers_start > MAX_PART_HEADERS => {
                return Err(MultipartError::BadHeaders("headers too long".into()));
            }
            None => return Err(MultipartError::Truncated),
        };
        let (name, filename) = disposition(&body[headers_start..headers_end])?;
        let data_start = headers_end + 4;
        let data_end = find(body, &close, data_start).ok_or(MultipartError::Truncated)?;
        parts.push(Part {
            name,
            filename,
            data: body.slice(data_start..data_end),
        });
        at = data_end + close.len();
    }
}

/// `name` and `filename` from a part's `Content-Disposition: form-data` header.
fn disposition(headers: &[u8]) -> Result<(String, Option<String>), MultipartError> {
    let text = std::str::from_utf8(headers)
        .map_err(|_| MultipartError::BadHeaders("headers are not UTF-8".into()))?;
    for line in text.split("\r\n") {
        let (key, value) = line
            .split_once(':')
            .ok_or_else(|| MultipartError::BadHeaders(format!("`{line}` is not a header")))?;
        if !key.trim().eq_ignore_ascii_case("content-disposition") {
            continue;
        }
        let (kind, params) = value.split_once(';').unwrap_or((value, ""));
        if !kind.trim().eq_ignore_ascii_case("form-data") {
            return Err(MultipartError::NoName);
        }
        let params = parameters(params);
        let get = |wanted: &str| {
            params
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(wanted))
                .map(|(_, v)| v.clone())
        };
        let name = get("name").ok_or(MultipartError::NoName)?;
        return Ok((name, get("filename")));
    }
    Err(MultipartError::NoName)
}

/// `; key=value; key="quoted; value"` parameters, keys lower-cased by the caller's comparison.
fn parameters(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ';' || c.is_whitespace()) {
            chars.next();
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c == ';' {
                break;
            }
            key.push(c);
            chars.next();
        }
        if key.is_empty() && chars.peek().is_none() {
            return out;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'=') {
            chars.next();
            if chars.peek() == Some(&'"') {
                chars.next();
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => value.extend(chars.next()),
                        c => value.push(c),
                    }
                }
            }
            while let Some(&c) = chars.peek() {
                if c == ';' {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        out.push((key.trim().to_owned(), value.trim().to_owned()));
    }
}

/// Index of the first `needle` in `haystack` at or after `from`.
fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    let first = *needle.first()?;
    let mut i = from;
    while i + needle.len() <= haystack.len() {
        let offset = haystack[i..=haystack.len() - needle.len()]
            .iter()
            .position(|&b| b == first)?;
        i += offset;
        if haystack[i..].starts_with(needle) {
            return Some(i);
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const CT: &str = "multipart/form-data; boundary=XyZ";

    fn body(text: &str) -> Bytes {
        Bytes::from(text.replace('\n', "\r\n"))
    }

    #[test]
    fn boundary_from_content_type() {
        assert_eq!(boundary(CT).unwrap(), "XyZ");
        assert_eq!(
            boundary("Multipart/Form-Data; charset=utf-8; boundary=\"a b;c\"").unwrap(),
            "a b;c"
        );
        assert!(matches!(
            boundary("application/json"),
            Err(MultipartError::NotMultipart(_))
        ));
        assert_eq!(
            boundary("multipart/form-data"),
            Err(MultipartError::NoBoundary)
        );
        let long = format!("multipart/form-data; boundary={}", "b".repeat(71));
        assert_eq!(boundary(&long), Err(MultipartError::NoBoundary));
    }

    #[test]
    fn fields_and_files() {
        let b = body(
            "preamble\n--XyZ\nContent-Disposition: form-data; name=\"model\"\n\nwhisper-1\n\
             --XyZ  \ncontent-disposition: form-data; name=\"file\"; filename=\"a;b.wav\"\n\
             Content-Type: audio/wav\n\nRIFF\n--Xy\n--XyZ--\nepilogue",
        );
        let parts = parse(&b, "XyZ").unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].name, "model");
        assert_eq!(parts[0].text(), Some("whisper-1"));
        assert_eq!(parts[0].filename, None);
        assert_eq!(parts[1].name, "file");
        assert_eq!(parts[1].filename.as_deref(), Some("a;b.wav"));
        // A line that only starts like the boundary is data.
        assert_eq!(&parts[1].data[..], b"RIFF\r\n--Xy");
    }

    #[test]
    fn empty_values_and_binary_data() {
        let mut raw = b"--XyZ\r\nContent-Disposition: form-data; name=\"file\"\r\n\r\n".to_vec();
        raw.extend([0u8, 255, 13, 10, 45, 45]);
        raw.extend(
            b"\r\n--XyZ\r\nContent-Disposition: form-data; name=\"prompt\"\r\n\r\n\r\n--XyZ--",
        );
        let parts = parse(&Bytes::from(raw), "XyZ").unwrap();
        assert_eq!(&parts[0].data[..], &[0, 255, 13, 10, 45, 45]);
        assert_eq!(parts[1].text(), Some(""));
    }

    #[test]
    fn malformed_bodies_are_errors() {
        let cases = [
            ("", MultipartError::NoFirstBoundary),
            ("hello", MultipartError::NoFirstBoundary),
            ("--XyZ", MultipartError::Truncated),
            (
                "--XyZ\nContent-Disposition: form-data; name=\"a\"\n\nvalue",
                MultipartError::Truncated,
            ),
            (
                "--XyZ\nContent-Disposition: form-data; name=\"a\"",
                MultipartError::Truncated,
            ),
            ("--XyZ\nX-Other: 1\n\nv\n--XyZ--", MultipartError::NoName),
            (
                "--XyZ\nContent-Disposition: attachment; name=\"a\"\n\nv\n--XyZ--",
                MultipartError::NoName,
            ),
        ];
        for (text, want) in cases {
            assert_eq!(parse(&body(text), "XyZ"), Err(want), "{text:?}");
        }
        assert!(matches!(
            parse(&body("--XyZ\nno colon here\n\nv\n--XyZ--"), "XyZ"),
            Err(MultipartError::BadHeaders(_))
        ));
        assert!(matches!(
            parse(&body("--XyZjunk\n\nv\n--XyZ--"), "XyZ"),
            Err(MultipartError::BadHeaders(_))
        ));
    }

    #[test]
    fn find_bytes() {
        assert_eq!(find(b"abcabd", b"abd", 0), Some(3));
        assert_eq!(find(b"abcabd", b"abc", 1), None);
        assert_eq!(find(b"ab", b"abc", 0), None);
        assert_eq!(find(b"aab", b"ab", 0), Some(1));
    }
}
