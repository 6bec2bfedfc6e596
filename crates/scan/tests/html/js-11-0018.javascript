<script>document eval)eval]" ""Ã©\é"[[document x p 3.5 line 42{." q"&;>eval function n000(){}function n001(){/return int.,}""</script>
<script>"<b>abca %41"  qab"true/</script>