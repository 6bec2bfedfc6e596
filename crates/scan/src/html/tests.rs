use super::*;

#[test]
fn entities_and_code_points_as_libclamav_writes_them() {
    let n = normalise(b"<p>a&amp;b &eacute; &Alpha; &#65;&#x3002;&bogus; &#300;</p>");
    assert_eq!(n.nocomment, b"<p>a&b \xe9 &#x0391; a.&bogus; &#x012c;</p>".to_vec());
}

/// libclamav's HTML typing, as measured with clamscan: the tag list, its cases, the window.
#[test]
fn html_typing_follows_libclamav() {
    for yes in [
        &b"<html>"[..],
        b"<HTML>",
        b"<Html>",
        b"x <head>",
        b"<script ",
        b"<SCRIPT>",
        b"<Img src",
        b"<iframe",
        b"<TABLE",
        b"<a  href=",
        b"<A Href",
        b"<Object",
    ] {
        assert!(is_html(yes), "{}", String::from_utf8_lossy(yes));
    }
    for no in [&b"<html"[..], b"<hTmL>", b"<Iframe", b"<Table", b"<body>", b"<a\\thref", b"<a hReF", b"<!doctype html>"]
    {
        assert!(!is_html(no), "{}", String::from_utf8_lossy(no));
    }
    let mut late = vec![b'x'; 1018];
    late.extend(b"<html>");
    assert!(is_html(&late), "a tag ending at byte 1,024");
    late.insert(0, b'x');
    assert!(!is_html(&late) && holds_html(&late), "one byte later: only further in");
}
