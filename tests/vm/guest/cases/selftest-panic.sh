# Harness self-test (last in every guest): crashes the kernel. The harness must report this case
# as unfinished with the console log attached, and qemu must exit instead of hanging.
echo "triggering a kernel crash"
echo c >/proc/sysrq-trigger
