<script></b>y</script>
<script><!--hidden-->x</script>