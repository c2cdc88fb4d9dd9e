#compdef oppty-router

autoload -U is-at-least

_oppty-router() {
    typeset -A opt_args
    typeset -a _arguments_options
    local ret=1

    if is-at-least 5.2; then
        _arguments_options=(-s -S -C)
    else
        _arguments_options=(-s -C)
    fi

    local context curcontext="$curcontext" state line
    _arguments "${_arguments_options[@]}" : \
'-c+[The daemon config]:CONFIG:_files' \
'--config=[The daemon config]:CONFIG:_files' \
'--database-url=[Connect with this connection string instead of the config'\''s \`database.url\` (and without its \`database.password_file\`)\: for a DBA running \`install\` or \`grants\` as the database owner]:DATABASE_URL:_default' \
'-h[Print help (see more with '\''--help'\'')]' \
'--help[Print help (see more with '\''--help'\'')]' \
'-V[Print version]' \
'--version[Print version]' \
":: :_oppty-router_commands" \
"*::: :->oppty-router" \
&& ret=0
    case $state in
    (oppty-router)
        words=($line[1] "${words[@]}")
        (( CURRENT += 1 ))
        curcontext="${curcontext%:*:*}:oppty-router-command-$line[1]:"
        case $line[1] in
            (run)
_arguments "${_arguments_options[@]}" : \
'-c+[The daemon config]:CONFIG:_files' \
'--config=[The daemon config]:CONFIG:_files' \
'--database-url=[Connect with this connection string instead of the config'\''s \`database.url\` (and without its \`database.password_file\`)\: for a DBA running \`install\` or \`grants\` as the database owner]:DATABASE_URL:_default' \
'-h[Print help]' \
'--help[Print help]' \
&& ret=0
;;
(check)
_arguments "${_arguments_options[@]}" : \
'--rules=[Check this rules directory instead of the config'\''s \`router.rules_dir\`]:RULES:_files' \
'-c+[The daemon config]:CONFIG:_files' \
'--config=[The daemon config]:CONFIG:_files' \
'--database-url=[Connect with this connection string instead of the config'\''s \`database.url\` (and without its \`database.password_file\`)\: for a DBA running \`install\` or \`grants\` as the database owner]:DATABASE_URL:_default' \
'--offline[Do not connect to the database]' \
'-h[Print help]' \
'--help[Print help]' \
&& ret=0
;;
(install)
_arguments "${_arguments_options[@]}" : \
'-c+[The daemon config]:CONFIG:_files' \
'--config=[The daemon config]:CONFIG:_files' \
'--database-url=[Connect with this connection string instead of the config'\''s \`database.url\` (and without its \`database.password_file\`)\: for a DBA running \`install\` or \`grants\` as the database owner]:DATABASE_URL:_default' \
'--dry-run[Print the SQL instead of running it]' \
'--no-backfill[Do not queue the open, unowned opportunities already in the CRM (see \`backfill\`)]' \
'-h[Print help]' \
'--help[Print help]' \
&& ret=0
;;
(backfill)
_arguments "${_arguments_options[@]}" : \
'--since=[Only those created this recently (\`2h\`, \`7d\`; needs opportunity.created_at)]:SINCE:_default' \
'-c+[The daemon config]:CONFIG:_files' \
'--config=[The daemon config]:CONFIG:_files' \
'--database-url=[Connect with this connection string instead of the config'\''s \`database.url\` (and without its \`database.password_file\`)\: for a DBA running \`install\` or \`grants\` as the database owner]:DATABASE_URL:_default' \
'--dry-run[Count them, queue nothing]' \
'-h[Print help]' \
'--help[Print help]' \
&& ret=0
;;
(uninstall)
_arguments "${_arguments_options[@]}" : \
'-c+[The daemon config]:CONFIG:_files' \
'--config=[The daemon config]:CONFIG:_files' \
'--database-url=[Connect with this connection string instead of the config'\''s \`database.url\` (and without its \`database.password_file\`)\: for a DBA running \`install\` or \`grants\` as the database owner]:DATABASE_URL:_default' \
'--dry-run[Print the SQL instead of running it]' \
'-h[Print help]' \
'--help[Print help]' \
&& ret=0
;;
(demo)
_arguments "${_arguments_options[@]}" : \
'--seconds=[How long to stream opportunities]:SECONDS:_default' \
'--rate=[Opportunities per second in the stream]:RATE:_default' \
'--backlog=[Opportunities queued while the daemon is stopped, to measure the drain rate]:BACKLOG:_default' \
'--rules=[Rules directory (default\: config/rules)]:RULES:_files' \
'--seed=[]:SEED:_default' \
'-c+[The daemon config]:CONFIG:_files' \
'--config=[The daemon config]:CONFIG:_files' \
'--database-url=[Connect with this connection string instead of the config'\''s \`database.url\` (and without its \`database.password_file\`)\: for a DBA running \`install\` or \`grants\` as the database owner]:DATABASE_URL:_default' \
'--keep[Leave the database running and print how to connect]' \
'--console[After the run, serve the web console on the demo'\''s CRM (its address and a login are printed) and route on until Ctrl-C]' \
'-h[Print help]' \
'--help[Print help]' \
&& ret=0
;;
(requeue)
_arguments "${_arguments_options[@]}" : \
'--since=[Only those left (or failed) this recently (\`2h\`, \`7d\`)]:SINCE:_default' \
'*--id=[Only these opportunities (repeat it, or separate ids with commas)]:OPPORTUNITY:_default' \
'-c+[The daemon config]:CONFIG:_files' \
'--config=[The daemon config]:CONFIG:_files' \
'--database-url=[Connect with this connection string instead of the config'\''s \`database.url\` (and without its \`database.password_file\`)\: for a DBA running \`install\` or \`grants\` as the database owner]:DATABASE_URL:_default' \
'--unassigned[The opportunities left unassigned (no rule yielded anybody, no fallback owner)]' \
'--dead-letter[The dead-lettered events]' \
'-h[Print help]' \
'--help[Print help]' \
&& ret=0
;;
(grants)
_arguments "${_arguments_options[@]}" : \
'-c+[The daemon config]:CONFIG:_files' \
'--config=[The daemon config]:CONFIG:_files' \
'--database-url=[Connect with this connection string instead of the config'\''s \`database.url\` (and without its \`database.password_file\`)\: for a DBA running \`install\` or \`grants\` as the database owner]:DATABASE_URL:_default' \
'--revoke[Print the REVOKE statements withdrawing them instead (before or after \`uninstall\`)]' \
'-h[Print help]' \
'--help[Print help]' \
':role -- The daemon'\''s role (as it will log in\: `user=` in database.url):_default' \
&& ret=0
;;
(status)
_arguments "${_arguments_options[@]}" : \
'-c+[The daemon config]:CONFIG:_files' \
'--config=[The daemon config]:CONFIG:_files' \
'--database-url=[Connect with this connection string instead of the config'\''s \`database.url\` (and without its \`database.password_file\`)\: for a DBA running \`install\` or \`grants\` as the database owner]:DATABASE_URL:_default' \
'--json[Print the report as JSON (for scripts and monitoring)]' \
'-h[Print help]' \
'--help[Print help]' \
&& ret=0
;;
(schema)
_arguments "${_arguments_options[@]}" : \
'-c+[The daemon config]:CONFIG:_files' \
'--config=[The daemon config]:CONFIG:_files' \
'--database-url=[Connect with this connection string instead of the config'\''s \`database.url\` (and without its \`database.password_file\`)\: for a DBA running \`install\` or \`grants\` as the database owner]:DATABASE_URL:_default' \
'-h[Print help]' \
'--help[Print help]' \
&& ret=0
;;
(unpause)
_arguments "${_arguments_options[@]}" : \
'--by=[Who lifts it, recorded with the pause (default\: the login name)]:BY:_default' \
'-c+[The daemon config]:CONFIG:_files' \
'--config=[The daemon config]:CONFIG:_files' \
'--database-url=[Connect with this connection string instead of the config'\''s \`database.url\` (and without its \`database.password_file\`)\: for a DBA running \`install\` or \`grants\` as the database owner]:DATABASE_URL:_default' \
'-h[Print help]' \
'--help[Print help]' \
':member -- The member'\''s CRM user id:_default' \
&& ret=0
;;
(revert)
_arguments "${_arguments_options[@]}" : \
'--to=[The version (\`14-3fa9…\`, or its number \`14\`); \`--list\` shows those kept]:TO:_default' \
'-c+[The daemon config]:CONFIG:_files' \
'--config=[The daemon config]:CONFIG:_files' \
'--database-url=[Connect with this connection string instead of the config'\''s \`database.url\` (and without its \`database.password_file\`)\: for a DBA running \`install\` or \`grants\` as the database owner]:DATABASE_URL:_default' \
'--dry-run[Print what would be written and set aside, and the diff; write nothing]' \
'(--to --dry-run)--list[List the versions kept, the latest first, each with what changed from the one before]' \
'-h[Print help]' \
'--help[Print help]' \
&& ret=0
;;
(explain)
_arguments "${_arguments_options[@]}" : \
'-c+[The daemon config]:CONFIG:_files' \
'--config=[The daemon config]:CONFIG:_files' \
'--database-url=[Connect with this connection string instead of the config'\''s \`database.url\` (and without its \`database.password_file\`)\: for a DBA running \`install\` or \`grants\` as the database owner]:DATABASE_URL:_default' \
'--json[Print the decisions as JSON (each with its stored explanation)]' \
'-h[Print help]' \
'--help[Print help]' \
':opportunity_id -- The opportunity'\''s id, as text:_default' \
&& ret=0
;;
(simulate)
_arguments "${_arguments_options[@]}" : \
'--rules=[The candidate rules directory (a copy of the rules, with your edits)]:RULES:_files' \
'(--opportunities)--since=[Replay the opportunities first decided this recently (\`7d\`, \`36h\`)]:SINCE:_default' \
'--opportunities=[Replay exactly these opportunities\: a file with one id a line (or a CSV, id first)]:FILE:_files' \
'--html=[Also write the report as one self-contained HTML page (charts inline, no network)]:FILE:_files' \
'--seed=[The replay'\''s randomness (random picks, ties)\: the same seed gives the same replay]:SEED:_default' \
'-c+[The daemon config]:CONFIG:_files' \
'--config=[The daemon config]:CONFIG:_files' \
'--database-url=[Connect with this connection string instead of the config'\''s \`database.url\` (and without its \`database.password_file\`)\: for a DBA running \`install\` or \`grants\` as the database owner]:DATABASE_URL:_default' \
'(--rules)--in-force[Replay each decision with the rule set that made it (as the router kept it), from what it saw\: what the router did, decided again; anything that would change is a fault]' \
'--json[Print the report as JSON]' \
'-h[Print help]' \
'--help[Print help]' \
&& ret=0
;;
(report)
_arguments "${_arguments_options[@]}" : \
'--since=[The opportunities first decided this recently (\`30d\`, \`12h\`)]:SINCE:_default' \
'--html=[Also write the report as one self-contained HTML page (charts inline, no network)]:FILE:_files' \
'-c+[The daemon config]:CONFIG:_files' \
'--config=[The daemon config]:CONFIG:_files' \
'--database-url=[Connect with this connection string instead of the config'\''s \`database.url\` (and without its \`database.password_file\`)\: for a DBA running \`install\` or \`grants\` as the database owner]:DATABASE_URL:_default' \
'--json[Print the report as JSON]' \
'-h[Print help]' \
'--help[Print help]' \
&& ret=0
;;
(console)
_arguments "${_arguments_options[@]}" : \
'-c+[The daemon config]:CONFIG:_files' \
'--config=[The daemon config]:CONFIG:_files' \
'--database-url=[Connect with this connection string instead of the config'\''s \`database.url\` (and without its \`database.password_file\`)\: for a DBA running \`install\` or \`grants\` as the database owner]:DATABASE_URL:_default' \
'-h[Print help]' \
'--help[Print help]' \
":: :_oppty-router__subcmd__console_commands" \
"*::: :->console" \
&& ret=0

    case $state in
    (console)
        words=($line[1] "${words[@]}")
        (( CURRENT += 1 ))
        curcontext="${curcontext%:*:*}:oppty-router-console-command-$line[1]:"
        case $line[1] in
            (user)
_arguments "${_arguments_options[@]}" : \
'-c+[The daemon config]:CONFIG:_files' \
'--config=[The daemon config]:CONFIG:_files' \
'--database-url=[Connect with this connection string instead of the config'\''s \`database.url\` (and without its \`database.password_file\`)\: for a DBA running \`install\` or \`grants\` as the database owner]:DATABASE_URL:_default' \
'-h[Print help]' \
'--help[Print help]' \
":: :_oppty-router__subcmd__console__subcmd__user_commands" \
"*::: :->user" \
&& ret=0

    case $state in
    (user)
        words=($line[1] "${words[@]}")
        (( CURRENT += 1 ))
        curcontext="${curcontext%:*:*}:oppty-router-console-user-command-$line[1]:"
        case $line[1] in
            (add)
_arguments "${_arguments_options[@]}" : \
'--role=[viewer (sees everything) or editor (also saves and reverts rules)]:ROLE:(viewer editor)' \
'-c+[The daemon config]:CONFIG:_files' \
'--config=[The daemon config]:CONFIG:_files' \
'--database-url=[Connect with this connection string instead of the config'\''s \`database.url\` (and without its \`database.password_file\`)\: for a DBA running \`install\` or \`grants\` as the database owner]:DATABASE_URL:_default' \
'-h[Print help]' \
'--help[Print help]' \
':name -- The name to log in with:_default' \
&& ret=0
;;
(help)
_arguments "${_arguments_options[@]}" : \
":: :_oppty-router__subcmd__console__subcmd__user__subcmd__help_commands" \
"*::: :->help" \
&& ret=0

    case $state in
    (help)
        words=($line[1] "${words[@]}")
        (( CURRENT += 1 ))
        curcontext="${curcontext%:*:*}:oppty-router-console-user-help-command-$line[1]:"
        case $line[1] in
            (add)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(help)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
        esac
    ;;
esac
;;
        esac
    ;;
esac
;;
(help)
_arguments "${_arguments_options[@]}" : \
":: :_oppty-router__subcmd__console__subcmd__help_commands" \
"*::: :->help" \
&& ret=0

    case $state in
    (help)
        words=($line[1] "${words[@]}")
        (( CURRENT += 1 ))
        curcontext="${curcontext%:*:*}:oppty-router-console-help-command-$line[1]:"
        case $line[1] in
            (user)
_arguments "${_arguments_options[@]}" : \
":: :_oppty-router__subcmd__console__subcmd__help__subcmd__user_commands" \
"*::: :->user" \
&& ret=0

    case $state in
    (user)
        words=($line[1] "${words[@]}")
        (( CURRENT += 1 ))
        curcontext="${curcontext%:*:*}:oppty-router-console-help-user-command-$line[1]:"
        case $line[1] in
            (add)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
        esac
    ;;
esac
;;
(help)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
        esac
    ;;
esac
;;
        esac
    ;;
esac
;;
(completions)
_arguments "${_arguments_options[@]}" : \
'-c+[The daemon config]:CONFIG:_files' \
'--config=[The daemon config]:CONFIG:_files' \
'--database-url=[Connect with this connection string instead of the config'\''s \`database.url\` (and without its \`database.password_file\`)\: for a DBA running \`install\` or \`grants\` as the database owner]:DATABASE_URL:_default' \
'-h[Print help]' \
'--help[Print help]' \
':shell:(bash elvish fish powershell zsh)' \
&& ret=0
;;
(manpage)
_arguments "${_arguments_options[@]}" : \
'--dir=[Write \`oppty-router.1\` and \`oppty-router-<command>.1\` here]:DIR:_files' \
'-c+[The daemon config]:CONFIG:_files' \
'--config=[The daemon config]:CONFIG:_files' \
'--database-url=[Connect with this connection string instead of the config'\''s \`database.url\` (and without its \`database.password_file\`)\: for a DBA running \`install\` or \`grants\` as the database owner]:DATABASE_URL:_default' \
'-h[Print help]' \
'--help[Print help]' \
&& ret=0
;;
(help)
_arguments "${_arguments_options[@]}" : \
":: :_oppty-router__subcmd__help_commands" \
"*::: :->help" \
&& ret=0

    case $state in
    (help)
        words=($line[1] "${words[@]}")
        (( CURRENT += 1 ))
        curcontext="${curcontext%:*:*}:oppty-router-help-command-$line[1]:"
        case $line[1] in
            (run)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(check)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(install)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(backfill)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(uninstall)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(demo)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(requeue)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(grants)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(status)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(schema)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(unpause)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(revert)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(explain)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(simulate)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(report)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(console)
_arguments "${_arguments_options[@]}" : \
":: :_oppty-router__subcmd__help__subcmd__console_commands" \
"*::: :->console" \
&& ret=0

    case $state in
    (console)
        words=($line[1] "${words[@]}")
        (( CURRENT += 1 ))
        curcontext="${curcontext%:*:*}:oppty-router-help-console-command-$line[1]:"
        case $line[1] in
            (user)
_arguments "${_arguments_options[@]}" : \
":: :_oppty-router__subcmd__help__subcmd__console__subcmd__user_commands" \
"*::: :->user" \
&& ret=0

    case $state in
    (user)
        words=($line[1] "${words[@]}")
        (( CURRENT += 1 ))
        curcontext="${curcontext%:*:*}:oppty-router-help-console-user-command-$line[1]:"
        case $line[1] in
            (add)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
        esac
    ;;
esac
;;
        esac
    ;;
esac
;;
(completions)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(manpage)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(help)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
        esac
    ;;
esac
;;
        esac
    ;;
esac
}

(( $+functions[_oppty-router_commands] )) ||
_oppty-router_commands() {
    local commands; commands=(
'run:Run the daemon\: drain captured changes, route, write owners back' \
'check:Validate the config and the rules (and the mapping against the database when reachable)' \
'install:Create the router'\''s schema and the capture triggers (idempotent)' \
'backfill:Queue every open, unowned opportunity for routing (those from before \`install\`, or left behind); prints how many. Nothing already queued is queued twice' \
'uninstall:Remove the capture triggers and the router'\''s schema; the CRM'\''s tables are untouched' \
'demo:Everything on a throwaway database\: sample CRM, live routing, summary, latency' \
'requeue:Put opportunities left behind back in the queue\: those the router left unassigned, or whose events were dead-lettered (after fixing the cause\: see \`status\`)' \
'grants:Print the GRANT statements a dedicated daemon role needs, in parts by who can grant them (the owners of the CRM'\''s tables and of the router'\''s schema, the database owner)' \
'status:Show the daemon'\''s state\: rules in force, the latest refusal of new rules, the queue' \
'schema:Print the JSON Schema of rule files (committed as config/rules.schema.json)' \
'unpause:Lift a member'\''s pause for letting opportunities lapse (see \`status\`); the daemon gives them work again from its next sweep' \
'revert:Give the rules directory back the files of a version that was in force (as the router kept it), checked first as the daemon will check them; the daemon reloads them' \
'explain:Show why the router assigned an opportunity the way it did' \
'simulate:Replay past opportunities through a candidate rules directory, writing nothing\: what each team and member would have received, fairness, fallbacks, and every owner that would change' \
'report:What the router did\: assignments per team, member and rule, fairness, fallbacks, reclaims' \
'console:Serve the web console (a process of its own; \`\[console\] listen\`, localhost by default), or manage its accounts' \
'completions:Print a shell completion script (bash, zsh, fish, elvish, powershell) to stdout' \
'manpage:Print the man page (roff) to stdout, or write one page per command into a directory' \
'help:Print this message or the help of the given subcommand(s)' \
    )
    _describe -t commands 'oppty-router commands' commands "$@"
}
(( $+functions[_oppty-router__subcmd__backfill_commands] )) ||
_oppty-router__subcmd__backfill_commands() {
    local commands; commands=()
    _describe -t commands 'oppty-router backfill commands' commands "$@"
}
(( $+functions[_oppty-router__subcmd__check_commands] )) ||
_oppty-router__subcmd__check_commands() {
    local commands; commands=()
    _describe -t commands 'oppty-router check commands' commands "$@"
}
(( $+functions[_oppty-router__subcmd__completions_commands] )) ||
_oppty-router__subcmd__completions_commands() {
    local commands; commands=()
    _describe -t commands 'oppty-router completions commands' commands "$@"
}
(( $+functions[_oppty-router__subcmd__console_commands] )) ||
_oppty-router__subcmd__console_commands() {
    local commands; commands=(
'user:The console'\''s accounts (\`console.users\`)' \
'help:Print this message or the help of the given subcommand(s)' \
    )
    _describe -t commands 'oppty-router console commands' commands "$@"
}
(( $+functions[_oppty-router__subcmd__console__subcmd__help_commands] )) ||
_oppty-router__subcmd__console__subcmd__help_commands() {
    local commands; commands=(
'user:The console'\''s accounts (\`console.users\`)' \
'help:Print this message or the help of the given subcommand(s)' \
    )
    _describe -t commands 'oppty-router console help commands' commands "$@"
}
(( $+functions[_oppty-router__subcmd__console__subcmd__help__subcmd__help_commands] )) ||
_oppty-router__subcmd__console__subcmd__help__subcmd__help_commands() {
    local commands; commands=()
    _describe -t commands 'oppty-router console help help commands' commands "$@"
}
(( $+functions[_oppty-router__subcmd__console__subcmd__help__subcmd__user_commands] )) ||
_oppty-router__subcmd__console__subcmd__help__subcmd__user_commands() {
    local commands; commands=(
'add:Add an account, or change one'\''s role and password\: the password is asked for on the terminal (or read as the first line of stdin)' \
    )
    _describe -t commands 'oppty-router console help user commands' commands "$@"
}
(( $+functions[_oppty-router__subcmd__console__subcmd__help__subcmd__user__subcmd__add_commands] )) ||
_oppty-router__subcmd__console__subcmd__help__subcmd__user__subcmd__add_commands() {
    local commands; commands=()
    _describe -t commands 'oppty-router console help user add commands' commands "$@"
}
(( $+functions[_oppty-router__subcmd__console__subcmd__user_commands] )) ||
_oppty-router__subcmd__console__subcmd__user_commands() {
    local commands; commands=(
'add:Add an account, or change one'\''s role and password\: the password is asked for on the terminal (or read as the first line of stdin)' \
'help:Print this message or the help of the given subcommand(s)' \
    )
    _describe -t commands 'oppty-router console user commands' commands "$@"
}
(( $+functions[_oppty-router__subcmd__console__subcmd__user__subcmd__add_commands] )) ||
_oppty-router__subcmd__console__subcmd__user__subcmd__add_commands() {
    local commands; commands=()
    _describe -t commands 'oppty-router console user add commands' commands "$@"
}
(( $+functions[_oppty-router__subcmd__console__subcmd__user__subcmd__help_commands] )) ||
_oppty-router__subcmd__console__subcmd__user__subcmd__help_commands() {
    local commands; commands=(
'add:Add an account, or change one'\''s role and password\: the password is asked for on the terminal (or read as the first line of stdin)' \
'help:Print this message or the help of the given subcommand(s)' \
    )
    _describe -t commands 'oppty-router console user help commands' commands "$@"
}
(( $+functions[_oppty-router__subcmd__console__subcmd__user__subcmd__help__subcmd__add_commands] )) ||
_oppty-router__subcmd__console__subcmd__user__subcmd__help__subcmd__add_commands() {
    local commands; commands=()
    _describe -t commands 'oppty-router console user help add commands' commands "$@"
}
(( $+functions[_oppty-router__subcmd__console__subcmd__user__subcmd__help__subcmd__help_commands] )) ||
_oppty-router__subcmd__console__subcmd__user__subcmd__help__subcmd__help_commands() {
    local commands; commands=()
    _describe -t commands 'oppty-router console user help help commands' commands "$@"
}
(( $+functions[_oppty-router__subcmd__demo_commands] )) ||
_oppty-router__subcmd__demo_commands() {
    local commands; commands=()
    _describe -t commands 'oppty-router demo commands' commands "$@"
}
(( $+functions[_oppty-router__subcmd__explain_commands] )) ||
_oppty-router__subcmd__explain_commands() {
    local commands; commands=()
    _describe -t commands 'oppty-router explain commands' commands "$@"
}
(( $+functions[_oppty-router__subcmd__grants_commands] )) ||
_oppty-router__subcmd__grants_commands() {
    local commands; commands=()
    _describe -t commands 'oppty-router grants commands' commands "$@"
}
(( $+functions[_oppty-router__subcmd__help_commands] )) ||
_oppty-router__subcmd__help_commands() {
    local commands; commands=(
'run:Run the daemon\: drain captured changes, route, write owners back' \
'check:Validate the config and the rules (and the mapping against the database when reachable)' \
'install:Create the router'\''s schema and the capture triggers (idempotent)' \
'backfill:Queue every open, unowned opportunity for routing (those from before \`install\`, or left behind); prints how many. Nothing already queued is queued twice' \
'uninstall:Remove the capture triggers and the router'\''s schema; the CRM'\''s tables are untouched' \
'demo:Everything on a throwaway database\: sample CRM, live routing, summary, latency' \
'requeue:Put opportunities left behind back in the queue\: those the router left unassigned, or whose events were dead-lettered (after fixing the cause\: see \`status\`)' \
'grants:Print the GRANT statements a dedicated daemon role needs, in parts by who can grant them (the owners of the CRM'\''s tables and of the router'\''s schema, the database owner)' \
'status:Show the daemon'\''s state\: rules in force, the latest refusal of new rules, the queue' \
'schema:Print the JSON Schema of rule files (committed as config/rules.schema.json)' \
'unpause:Lift a member'\''s pause for letting opportunities lapse (see \`status\`); the daemon gives them work again from its next sweep' \
'revert:Give the rules directory back the files of a version that was in force (as the router kept it), checked first as the daemon will check them; the daemon reloads them' \
'explain:Show why the router assigned an opportunity the way it did' \
'simulate:Replay past opportunities through a candidate rules directory, writing nothing\: what each team and member would have received, fairness, fallbacks, and every owner that would change' \
'report:What the router did\: assignments per team, member and rule, fairness, fallbacks, reclaims' \
'console:Serve the web console (a process of its own; \`\[console\] listen\`, localhost by default), or manage its accounts' \
'completions:Print a shell completion script (bash, zsh, fish, elvish, powershell) to stdout' \
'manpage:Print the man page (roff) to stdout, or write one page per command into a directory' \
'help:Print this message or the help of the given subcommand(s)' \
    )
    _describe -t commands 'oppty-router help commands' commands "$@"
}
(( $+functions[_oppty-router__subcmd__help__subcmd__backfill_commands] )) ||
_oppty-router__subcmd__help__subcmd__backfill_commands() {
    local commands; commands=()
    _describe -t commands 'oppty-router help backfill commands' commands "$@"
}
(( $+functions[_oppty-router__subcmd__help__subcmd__check_commands] )) ||
_oppty-router__subcmd__help__subcmd__check_commands() {
    local commands; commands=()
    _describe -t commands 'oppty-router help check commands' commands "$@"
}
(( $+functions[_oppty-router__subcmd__help__subcmd__completions_commands] )) ||
_oppty-router__subcmd__help__subcmd__completions_commands() {
    local commands; commands=()
    _describe -t commands 'oppty-router help completions commands' commands "$@"
}
(( $+functions[_oppty-router__subcmd__help__subcmd__console_commands] )) ||
_oppty-router__subcmd__help__subcmd__console_commands() {
    local commands; commands=(
'user:The console'\''s accounts (\`console.users\`)' \
    )
    _describe -t commands 'oppty-router help console commands' commands "$@"
}
(( $+functions[_oppty-router__subcmd__help__subcmd__console__subcmd__user_commands] )) ||
_oppty-router__subcmd__help__subcmd__console__subcmd__user_commands() {
    local commands; commands=(
'add:Add an account, or change one'\''s role and password\: the password is asked for on the terminal (or read as the first line of stdin)' \
    )
    _describe -t commands 'oppty-router help console user commands' commands "$@"
}
(( $+functions[_oppty-router__subcmd__help__subcmd__console__subcmd__user__subcmd__add_commands] )) ||
_oppty-router__subcmd__help__subcmd__console__subcmd__user__subcmd__add_commands() {
    local commands; commands=()
    _describe -t commands 'oppty-router help console user add commands' commands "$@"
}
(( $+functions[_oppty-router__subcmd__help__subcmd__demo_commands] )) ||
_oppty-router__subcmd__help__subcmd__demo_commands() {
    local commands; commands=()
    _describe -t commands 'oppty-router help demo commands' commands "$@"
}
(( $+functions[_oppty-router__subcmd__help__subcmd__explain_commands] )) ||
_oppty-router__subcmd__help__subcmd__explain_commands() {
    local commands; commands=()
    _describe -t commands 'oppty-router help explain commands' commands "$@"
}
(( $+functions[_oppty-router__subcmd__help__subcmd__grants_commands] )) ||
_oppty-router__subcmd__help__subcmd__grants_commands() {
    local commands; commands=()
    _describe -t commands 'oppty-router help grants commands' commands "$@"
}
(( $+functions[_oppty-router__subcmd__help__subcmd__help_commands] )) ||
_oppty-router__subcmd__help__subcmd__help_commands() {
    local commands; commands=()
    _describe -t commands 'oppty-router help help commands' commands "$@"
}
(( $+functions[_oppty-router__subcmd__help__subcmd__install_commands] )) ||
_oppty-router__subcmd__help__subcmd__install_commands() {
    local commands; commands=()
    _describe -t commands 'oppty-router help install commands' commands "$@"
}
(( $+functions[_oppty-router__subcmd__help__subcmd__manpage_commands] )) ||
_oppty-router__subcmd__help__subcmd__manpage_commands() {
    local commands; commands=()
    _describe -t commands 'oppty-router help manpage commands' commands "$@"
}
(( $+functions[_oppty-router__subcmd__help__subcmd__report_commands] )) ||
_oppty-router__subcmd__help__subcmd__report_commands() {
    local commands; commands=()
    _describe -t commands 'oppty-router help report commands' commands "$@"
}
(( $+functions[_oppty-router__subcmd__help__subcmd__requeue_commands] )) ||
_oppty-router__subcmd__help__subcmd__requeue_commands() {
    local commands; commands=()
    _describe -t commands 'oppty-router help requeue commands' commands "$@"
}
(( $+functions[_oppty-router__subcmd__help__subcmd__revert_commands] )) ||
_oppty-router__subcmd__help__subcmd__revert_commands() {
    local commands; commands=()
    _describe -t commands 'oppty-router help revert commands' commands "$@"
}
(( $+functions[_oppty-router__subcmd__help__subcmd__run_commands] )) ||
_oppty-router__subcmd__help__subcmd__run_commands() {
    local commands; commands=()
    _describe -t commands 'oppty-router help run commands' commands "$@"
}
(( $+functions[_oppty-router__subcmd__help__subcmd__schema_commands] )) ||
_oppty-router__subcmd__help__subcmd__schema_commands() {
    local commands; commands=()
    _describe -t commands 'oppty-router help schema commands' commands "$@"
}
(( $+functions[_oppty-router__subcmd__help__subcmd__simulate_commands] )) ||
_oppty-router__subcmd__help__subcmd__simulate_commands() {
    local commands; commands=()
    _describe -t commands 'oppty-router help simulate commands' commands "$@"
}
(( $+functions[_oppty-router__subcmd__help__subcmd__status_commands] )) ||
_oppty-router__subcmd__help__subcmd__status_commands() {
    local commands; commands=()
    _describe -t commands 'oppty-router help status commands' commands "$@"
}
(( $+functions[_oppty-router__subcmd__help__subcmd__uninstall_commands] )) ||
_oppty-router__subcmd__help__subcmd__uninstall_commands() {
    local commands; commands=()
    _describe -t commands 'oppty-router help uninstall commands' commands "$@"
}
(( $+functions[_oppty-router__subcmd__help__subcmd__unpause_commands] )) ||
_oppty-router__subcmd__help__subcmd__unpause_commands() {
    local commands; commands=()
    _describe -t commands 'oppty-router help unpause commands' commands "$@"
}
(( $+functions[_oppty-router__subcmd__install_commands] )) ||
_oppty-router__subcmd__install_commands() {
    local commands; commands=()
    _describe -t commands 'oppty-router install commands' commands "$@"
}
(( $+functions[_oppty-router__subcmd__manpage_commands] )) ||
_oppty-router__subcmd__manpage_commands() {
    local commands; commands=()
    _describe -t commands 'oppty-router manpage commands' commands "$@"
}
(( $+functions[_oppty-router__subcmd__report_commands] )) ||
_oppty-router__subcmd__report_commands() {
    local commands; commands=()
    _describe -t commands 'oppty-router report commands' commands "$@"
}
(( $+functions[_oppty-router__subcmd__requeue_commands] )) ||
_oppty-router__subcmd__requeue_commands() {
    local commands; commands=()
    _describe -t commands 'oppty-router requeue commands' commands "$@"
}
(( $+functions[_oppty-router__subcmd__revert_commands] )) ||
_oppty-router__subcmd__revert_commands() {
    local commands; commands=()
    _describe -t commands 'oppty-router revert commands' commands "$@"
}
(( $+functions[_oppty-router__subcmd__run_commands] )) ||
_oppty-router__subcmd__run_commands() {
    local commands; commands=()
    _describe -t commands 'oppty-router run commands' commands "$@"
}
(( $+functions[_oppty-router__subcmd__schema_commands] )) ||
_oppty-router__subcmd__schema_commands() {
    local commands; commands=()
    _describe -t commands 'oppty-router schema commands' commands "$@"
}
(( $+functions[_oppty-router__subcmd__simulate_commands] )) ||
_oppty-router__subcmd__simulate_commands() {
    local commands; commands=()
    _describe -t commands 'oppty-router simulate commands' commands "$@"
}
(( $+functions[_oppty-router__subcmd__status_commands] )) ||
_oppty-router__subcmd__status_commands() {
    local commands; commands=()
    _describe -t commands 'oppty-router status commands' commands "$@"
}
(( $+functions[_oppty-router__subcmd__uninstall_commands] )) ||
_oppty-router__subcmd__uninstall_commands() {
    local commands; commands=()
    _describe -t commands 'oppty-router uninstall commands' commands "$@"
}
(( $+functions[_oppty-router__subcmd__unpause_commands] )) ||
_oppty-router__subcmd__unpause_commands() {
    local commands; commands=()
    _describe -t commands 'oppty-router unpause commands' commands "$@"
}

if [ "$funcstack[1]" = "_oppty-router" ]; then
    _oppty-router "$@"
else
    compdef _oppty-router oppty-router
fi
