# Enable vmctx's units (each gated by a condition: nothing happens without a context).
if command -v systemctl >/dev/null; then
    systemctl enable vmctx-local.service vmctx.service vmctx-imds.service vmctx-sync.timer vmctx-update.timer >/dev/null 2>&1 || :
fi
