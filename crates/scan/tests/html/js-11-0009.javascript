<script>var n000,n001=[1,a];1)<=n000 e(</script>)</script>
<script>function(n000){var n001=[1,a]>>>=if n000=b z9<"ca\Ã©""*}"aÿca)</script "</script>