# Harness self-test (last in every guest): never finishes, so the per-case timeout must kill it.
echo "sleeping past the per-case timeout"
sleep 100000
