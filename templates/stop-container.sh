#!/bin/sh
# Every value below is single-quoted by devinst; shellcheck cannot know that
# a `$` inside such a value is meant literally.
# shellcheck disable=SC2016
# Written by `devinst setup`: stops the instance's container, keeping everything.
devinst={{ devinst }}
[ -x "$devinst" ] || devinst=devinst
exec "$devinst" stop -C {{ root }} "$@"
{# askama drops a template's last newline; this line keeps the script's #}
