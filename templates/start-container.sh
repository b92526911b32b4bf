#!/bin/sh
# Every value below is single-quoted by devinst; shellcheck cannot know that
# a `$` inside such a value is meant literally.
# shellcheck disable=SC2016
# Written by `devinst setup`: creates the instance's container if needed,
# starts it and runs the setup steps.
devinst={{ devinst }}
[ -x "$devinst" ] || devinst=devinst
exec "$devinst" start -C {{ root }} "$@"
{# askama drops a template's last newline; this line keeps the script's #}
