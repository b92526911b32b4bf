#!/bin/sh
# Every value below is single-quoted by devinst; shellcheck cannot know that
# a `$` inside such a value is meant literally.
# shellcheck disable=SC2016
# Written by `devinst setup`: runs this command inside the worktree's
# instance, with the arguments passed exactly as given.
devinst={{ devinst }}
[ -x "$devinst" ] || devinst=devinst
exec "$devinst" exec --worktree {{ root }} -- {% for arg in argv %}{% if !loop.first %} {% endif %}{{ arg }}{% endfor %} "$@"
{# askama drops a template's last newline; this line keeps the script's #}
