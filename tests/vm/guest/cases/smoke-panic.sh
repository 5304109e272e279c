# Harness self-test (--smoke): crashes the kernel; the cases after it must be reported as not
# run, with the console log attached.
echo "triggering a kernel crash"
echo c >/proc/sysrq-trigger
