use super::*;

#[test]
fn entities_and_code_points_as_libclamav_writes_them() {
    let n = normalise(b"<p>a&amp;b &eacute; &Alpha; &#65;&#x3002;&bogus; &#300;</p>");
    assert_eq!(n.nocomment, b"<p>a&b \xe9 &#x0391; a.&bogus; &#x012c;</p>".to_vec());
}
