# $1 is 0 on erase, 1 on upgrade.
if [ "$1" -eq 0 ] && command -v systemctl >/dev/null; then
    systemctl disable --now vmctx-local.service vmctx.service vmctx-hostkeys.service vmctx-imds.service vmctx-imds-host.service vmctx-sync.timer vmctx-update.timer >/dev/null 2>&1 || :
fi
# The cloud-init link post_install made, if it is still ours (cloud-init's own file stays).
if [ "$1" -eq 0 ] && [ -L /usr/bin/cloud-init ] && [ "$(readlink /usr/bin/cloud-init)" = vmctx ]; then
    rm -f /usr/bin/cloud-init
fi
