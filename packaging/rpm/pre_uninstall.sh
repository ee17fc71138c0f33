# $1 is 0 on erase, 1 on upgrade.
if [ "$1" -eq 0 ] && command -v systemctl >/dev/null; then
    systemctl disable --now vmctx-local.service vmctx.service vmctx-imds.service vmctx-sync.timer vmctx-update.timer >/dev/null 2>&1 || :
fi
