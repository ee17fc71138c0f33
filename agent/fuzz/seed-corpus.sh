#!/bin/sh
# Fills corpus/<target>/ with seeds: the committed ones under seeds/, the
# context.sh fixtures, and (if xorriso is installed) CONTEXT images built with
# and without Rock Ridge and Joliet. Run from agent/fuzz.
set -eu
cd "$(dirname "$0")"
for target in seeds/*; do
    mkdir -p "corpus/${target#seeds/}"
    install -m 644 "$target"/* "corpus/${target#seeds/}/"
done
for f in ../../vm-fixtures/contexts/*/context.sh; do
    install -m 644 "$f" "corpus/context_sh/$(basename "$(dirname "$f")").sh"
done
if command -v xorriso >/dev/null; then
    tree=$(mktemp -d)
    trap 'rm -rf "$tree"' EXIT
    mkdir -p "$tree/subdir"
    install -m 644 ../../vm-fixtures/contexts/hol02-vpn/context.sh "$tree/context.sh"
    printf '#!/bin/sh\necho init\n' > "$tree/Init-Script.With.Long_Name.sh"
    printf 'nested\n' > "$tree/subdir/nested.txt"
    head -c 5000 /dev/zero | tr '\0' 'x' > "$tree/big.bin"
    for flags in "-J -R" "--norock -J" "--norock"; do
        name=$(echo "xorriso$flags" | tr -d ' -')
        # shellcheck disable=SC2086
        xorriso -as mkisofs -V CONTEXT $flags -no-pad -o "corpus/iso9660/$name.iso" "$tree" 2>/dev/null
    done
fi
ls -l corpus/*
