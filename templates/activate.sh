# shellcheck shell=bash
# Every value below is single-quoted by devinst; shellcheck cannot know that
# quotes and `$` inside such a value are meant literally.
# shellcheck disable=SC2016,SC2089,SC2090
# Written by `devinst setup`. Source it from bash or zsh:
#     source .sky-dev/bin/activate
# It puts this instance's commands first on PATH; `deactivate` undoes it.

# Sourcing again (or another instance's activate) first undoes the last one.
if [ -n "${_DEVINST_OLD_PATH+x}" ] && command -v _devinst_deactivate >/dev/null 2>&1; then
    _devinst_deactivate
fi

_devinst_deactivate() {
    if [ -n "${_DEVINST_OLD_PATH+x}" ]; then
        PATH="$_DEVINST_OLD_PATH"
        export PATH
        unset _DEVINST_OLD_PATH
    fi
    if [ -n "${_DEVINST_OLD_PS1+x}" ]; then
        PS1="$_DEVINST_OLD_PS1"
        unset _DEVINST_OLD_PS1
    fi
    unset DEVINST_INSTANCE DEVINST_PORT DEVINST_WORKTREE DEVINST_CONTAINER {% for var in ports %}{% if !loop.first %} {% endif %}{{ var.name.unquoted() }}{% endfor %}
    unset SKYPILOT_DEV_INSTANCE SKYPILOT_DEV_PORT
    unset -f deactivate _devinst_deactivate
    hash -r 2>/dev/null || true
}

deactivate() {
    _devinst_deactivate
}

_DEVINST_OLD_PATH="$PATH"
PATH={{ bin_dir }}":$PATH"
export PATH

DEVINST_INSTANCE={{ name }}
DEVINST_PORT={{ port }}
DEVINST_WORKTREE={{ root }}
DEVINST_CONTAINER={{ container }}
SKYPILOT_DEV_INSTANCE={{ name }}
SKYPILOT_DEV_PORT={{ port }}
export DEVINST_INSTANCE DEVINST_PORT DEVINST_WORKTREE DEVINST_CONTAINER
export SKYPILOT_DEV_INSTANCE SKYPILOT_DEV_PORT
# Host ports of [ports.extra] (DEVINST_PORT_<NAME>) and of services
# (DEVINST_SERVICE_<NAME>_PORT).
{% for var in ports -%}
{{ var.name.unquoted() }}={{ var.value }}
export {{ var.name.unquoted() }}
{% endfor %}
if [ -z "${DEVINST_NO_PROMPT:-}" ]; then
    _DEVINST_OLD_PS1="${PS1-}"
    PS1={{ prompt }}"${PS1-}"
fi

hash -r 2>/dev/null || true
{# askama drops a template's last newline; this line keeps the script's #}
