<script>var n004="";var n000="é",n004 line k x\0041 unescape b["q "%p this function(n002,n003){}[return-" ab%41"%41 + x var a = [1, a];</script>"</script>
<script>var n003,n003=a+b"".1 e5(b"<b>ca| "_y""^b else var n003="",n003=[1,a];"'ca\") function foo(foo) {  } "x4 0  x4" int write 1. <= $x '<b> <b>' - null !=</script "))</script>
<script>function(n000){}var n001=[1,a],n002;</script>