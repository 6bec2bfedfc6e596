<script>document.write("</script>")</script>
<script>document.write("</script>")</script>