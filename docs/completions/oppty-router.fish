# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_oppty_router_global_optspecs
    string join \n c/config= database-url= h/help V/version
end

function __fish_oppty_router_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_oppty_router_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_oppty_router_using_subcommand
    set -l cmd (__fish_oppty_router_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c oppty-router -n "__fish_oppty_router_needs_command" -s c -l config -d 'The daemon config' -r -F
complete -c oppty-router -n "__fish_oppty_router_needs_command" -l database-url -d 'Connect with this connection string instead of the config\'s `database.url` (and without its `database.password_file`): for a DBA running `install` or `grants` as the database owner' -r
complete -c oppty-router -n "__fish_oppty_router_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c oppty-router -n "__fish_oppty_router_needs_command" -s V -l version -d 'Print version'
complete -c oppty-router -n "__fish_oppty_router_needs_command" -f -a "run" -d 'Run the daemon: drain captured changes, route, write owners back'
complete -c oppty-router -n "__fish_oppty_router_needs_command" -f -a "check" -d 'Validate the config and the rules (and the mapping against the database when reachable)'
complete -c oppty-router -n "__fish_oppty_router_needs_command" -f -a "install" -d 'Create the router\'s schema and the capture triggers (idempotent)'
complete -c oppty-router -n "__fish_oppty_router_needs_command" -f -a "backfill" -d 'Queue every open, unowned opportunity for routing (those from before `install`, or left behind); prints how many. Nothing already queued is queued twice'
complete -c oppty-router -n "__fish_oppty_router_needs_command" -f -a "uninstall" -d 'Remove the capture triggers and the router\'s schema; the CRM\'s tables are untouched'
complete -c oppty-router -n "__fish_oppty_router_needs_command" -f -a "demo" -d 'Everything on a throwaway database: sample CRM, live routing, summary, latency'
complete -c oppty-router -n "__fish_oppty_router_needs_command" -f -a "requeue" -d 'Put opportunities left behind back in the queue: those the router left unassigned, or whose events were dead-lettered (after fixing the cause: see `status`)'
complete -c oppty-router -n "__fish_oppty_router_needs_command" -f -a "grants" -d 'Print the GRANT statements a dedicated daemon role needs, in parts by who can grant them (the owners of the CRM\'s tables and of the router\'s schema, the database owner)'
complete -c oppty-router -n "__fish_oppty_router_needs_command" -f -a "status" -d 'Show the daemon\'s state: rules in force, the latest refusal of new rules, the queue'
complete -c oppty-router -n "__fish_oppty_router_needs_command" -f -a "schema" -d 'Print the JSON Schema of rule files (committed as config/rules.schema.json)'
complete -c oppty-router -n "__fish_oppty_router_needs_command" -f -a "unpause" -d 'Lift a member\'s pause for letting opportunities lapse (see `status`); the daemon gives them work again from its next sweep'
complete -c oppty-router -n "__fish_oppty_router_needs_command" -f -a "revert" -d 'Give the rules directory back the files of a version that was in force (as the router kept it), checked first as the daemon will check them; the daemon reloads them'
complete -c oppty-router -n "__fish_oppty_router_needs_command" -f -a "explain" -d 'Show why the router assigned an opportunity the way it did'
complete -c oppty-router -n "__fish_oppty_router_needs_command" -f -a "simulate" -d 'Replay past opportunities through a candidate rules directory, writing nothing: what each team and member would have received, fairness, fallbacks, and every owner that would change'
complete -c oppty-router -n "__fish_oppty_router_needs_command" -f -a "report" -d 'What the router did: assignments per team, member and rule, fairness, fallbacks, reclaims'
complete -c oppty-router -n "__fish_oppty_router_needs_command" -f -a "console" -d 'Serve the web console (a process of its own; `[console] listen`, localhost by default), or manage its accounts'
complete -c oppty-router -n "__fish_oppty_router_needs_command" -f -a "completions" -d 'Print a shell completion script (bash, zsh, fish, elvish, powershell) to stdout'
complete -c oppty-router -n "__fish_oppty_router_needs_command" -f -a "manpage" -d 'Print the man page (roff) to stdout, or write one page per command into a directory'
complete -c oppty-router -n "__fish_oppty_router_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c oppty-router -n "__fish_oppty_router_using_subcommand run" -s c -l config -d 'The daemon config' -r -F
complete -c oppty-router -n "__fish_oppty_router_using_subcommand run" -l database-url -d 'Connect with this connection string instead of the config\'s `database.url` (and without its `database.password_file`): for a DBA running `install` or `grants` as the database owner' -r
complete -c oppty-router -n "__fish_oppty_router_using_subcommand run" -s h -l help -d 'Print help'
complete -c oppty-router -n "__fish_oppty_router_using_subcommand check" -l rules -d 'Check this rules directory instead of the config\'s `router.rules_dir`' -r -F
complete -c oppty-router -n "__fish_oppty_router_using_subcommand check" -s c -l config -d 'The daemon config' -r -F
complete -c oppty-router -n "__fish_oppty_router_using_subcommand check" -l database-url -d 'Connect with this connection string instead of the config\'s `database.url` (and without its `database.password_file`): for a DBA running `install` or `grants` as the database owner' -r
complete -c oppty-router -n "__fish_oppty_router_using_subcommand check" -l offline -d 'Do not connect to the database'
complete -c oppty-router -n "__fish_oppty_router_using_subcommand check" -s h -l help -d 'Print help'
complete -c oppty-router -n "__fish_oppty_router_using_subcommand install" -s c -l config -d 'The daemon config' -r -F
complete -c oppty-router -n "__fish_oppty_router_using_subcommand install" -l database-url -d 'Connect with this connection string instead of the config\'s `database.url` (and without its `database.password_file`): for a DBA running `install` or `grants` as the database owner' -r
complete -c oppty-router -n "__fish_oppty_router_using_subcommand install" -l dry-run -d 'Print the SQL instead of running it'
complete -c oppty-router -n "__fish_oppty_router_using_subcommand install" -l no-backfill -d 'Do not queue the open, unowned opportunities already in the CRM (see `backfill`)'
complete -c oppty-router -n "__fish_oppty_router_using_subcommand install" -s h -l help -d 'Print help'
complete -c oppty-router -n "__fish_oppty_router_using_subcommand backfill" -l since -d 'Only those created this recently (`2h`, `7d`; needs opportunity.created_at)' -r
complete -c oppty-router -n "__fish_oppty_router_using_subcommand backfill" -s c -l config -d 'The daemon config' -r -F
complete -c oppty-router -n "__fish_oppty_router_using_subcommand backfill" -l database-url -d 'Connect with this connection string instead of the config\'s `database.url` (and without its `database.password_file`): for a DBA running `install` or `grants` as the database owner' -r
complete -c oppty-router -n "__fish_oppty_router_using_subcommand backfill" -l dry-run -d 'Count them, queue nothing'
complete -c oppty-router -n "__fish_oppty_router_using_subcommand backfill" -s h -l help -d 'Print help'
complete -c oppty-router -n "__fish_oppty_router_using_subcommand uninstall" -s c -l config -d 'The daemon config' -r -F
complete -c oppty-router -n "__fish_oppty_router_using_subcommand uninstall" -l database-url -d 'Connect with this connection string instead of the config\'s `database.url` (and without its `database.password_file`): for a DBA running `install` or `grants` as the database owner' -r
complete -c oppty-router -n "__fish_oppty_router_using_subcommand uninstall" -l dry-run -d 'Print the SQL instead of running it'
complete -c oppty-router -n "__fish_oppty_router_using_subcommand uninstall" -s h -l help -d 'Print help'
complete -c oppty-router -n "__fish_oppty_router_using_subcommand demo" -l seconds -d 'How long to stream opportunities' -r
complete -c oppty-router -n "__fish_oppty_router_using_subcommand demo" -l rate -d 'Opportunities per second in the stream' -r
complete -c oppty-router -n "__fish_oppty_router_using_subcommand demo" -l backlog -d 'Opportunities queued while the daemon is stopped, to measure the drain rate' -r
complete -c oppty-router -n "__fish_oppty_router_using_subcommand demo" -l rules -d 'Rules directory (default: config/rules)' -r -F
complete -c oppty-router -n "__fish_oppty_router_using_subcommand demo" -l seed -r
complete -c oppty-router -n "__fish_oppty_router_using_subcommand demo" -s c -l config -d 'The daemon config' -r -F
complete -c oppty-router -n "__fish_oppty_router_using_subcommand demo" -l database-url -d 'Connect with this connection string instead of the config\'s `database.url` (and without its `database.password_file`): for a DBA running `install` or `grants` as the database owner' -r
complete -c oppty-router -n "__fish_oppty_router_using_subcommand demo" -l keep -d 'Leave the database running and print how to connect'
complete -c oppty-router -n "__fish_oppty_router_using_subcommand demo" -l console -d 'After the run, serve the web console on the demo\'s CRM (its address and a login are printed) and route on until Ctrl-C'
complete -c oppty-router -n "__fish_oppty_router_using_subcommand demo" -s h -l help -d 'Print help'
complete -c oppty-router -n "__fish_oppty_router_using_subcommand requeue" -l since -d 'Only those left (or failed) this recently (`2h`, `7d`)' -r
complete -c oppty-router -n "__fish_oppty_router_using_subcommand requeue" -l id -d 'Only these opportunities (repeat it, or separate ids with commas)' -r
complete -c oppty-router -n "__fish_oppty_router_using_subcommand requeue" -s c -l config -d 'The daemon config' -r -F
complete -c oppty-router -n "__fish_oppty_router_using_subcommand requeue" -l database-url -d 'Connect with this connection string instead of the config\'s `database.url` (and without its `database.password_file`): for a DBA running `install` or `grants` as the database owner' -r
complete -c oppty-router -n "__fish_oppty_router_using_subcommand requeue" -l unassigned -d 'The opportunities left unassigned (no rule yielded anybody, no fallback owner)'
complete -c oppty-router -n "__fish_oppty_router_using_subcommand requeue" -l dead-letter -d 'The dead-lettered events'
complete -c oppty-router -n "__fish_oppty_router_using_subcommand requeue" -s h -l help -d 'Print help'
complete -c oppty-router -n "__fish_oppty_router_using_subcommand grants" -s c -l config -d 'The daemon config' -r -F
complete -c oppty-router -n "__fish_oppty_router_using_subcommand grants" -l database-url -d 'Connect with this connection string instead of the config\'s `database.url` (and without its `database.password_file`): for a DBA running `install` or `grants` as the database owner' -r
complete -c oppty-router -n "__fish_oppty_router_using_subcommand grants" -l revoke -d 'Print the REVOKE statements withdrawing them instead (before or after `uninstall`)'
complete -c oppty-router -n "__fish_oppty_router_using_subcommand grants" -s h -l help -d 'Print help'
complete -c oppty-router -n "__fish_oppty_router_using_subcommand status" -s c -l config -d 'The daemon config' -r -F
complete -c oppty-router -n "__fish_oppty_router_using_subcommand status" -l database-url -d 'Connect with this connection string instead of the config\'s `database.url` (and without its `database.password_file`): for a DBA running `install` or `grants` as the database owner' -r
complete -c oppty-router -n "__fish_oppty_router_using_subcommand status" -l json -d 'Print the report as JSON (for scripts and monitoring)'
complete -c oppty-router -n "__fish_oppty_router_using_subcommand status" -s h -l help -d 'Print help'
complete -c oppty-router -n "__fish_oppty_router_using_subcommand schema" -s c -l config -d 'The daemon config' -r -F
complete -c oppty-router -n "__fish_oppty_router_using_subcommand schema" -l database-url -d 'Connect with this connection string instead of the config\'s `database.url` (and without its `database.password_file`): for a DBA running `install` or `grants` as the database owner' -r
complete -c oppty-router -n "__fish_oppty_router_using_subcommand schema" -s h -l help -d 'Print help'
complete -c oppty-router -n "__fish_oppty_router_using_subcommand unpause" -l by -d 'Who lifts it, recorded with the pause (default: the login name)' -r
complete -c oppty-router -n "__fish_oppty_router_using_subcommand unpause" -s c -l config -d 'The daemon config' -r -F
complete -c oppty-router -n "__fish_oppty_router_using_subcommand unpause" -l database-url -d 'Connect with this connection string instead of the config\'s `database.url` (and without its `database.password_file`): for a DBA running `install` or `grants` as the database owner' -r
complete -c oppty-router -n "__fish_oppty_router_using_subcommand unpause" -s h -l help -d 'Print help'
complete -c oppty-router -n "__fish_oppty_router_using_subcommand revert" -l to -d 'The version (`14-3fa9…`, or its number `14`); `--list` shows those kept' -r
complete -c oppty-router -n "__fish_oppty_router_using_subcommand revert" -s c -l config -d 'The daemon config' -r -F
complete -c oppty-router -n "__fish_oppty_router_using_subcommand revert" -l database-url -d 'Connect with this connection string instead of the config\'s `database.url` (and without its `database.password_file`): for a DBA running `install` or `grants` as the database owner' -r
complete -c oppty-router -n "__fish_oppty_router_using_subcommand revert" -l dry-run -d 'Print what would be written and set aside, and the diff; write nothing'
complete -c oppty-router -n "__fish_oppty_router_using_subcommand revert" -l list -d 'List the versions kept, the latest first, each with what changed from the one before'
complete -c oppty-router -n "__fish_oppty_router_using_subcommand revert" -s h -l help -d 'Print help'
complete -c oppty-router -n "__fish_oppty_router_using_subcommand explain" -s c -l config -d 'The daemon config' -r -F
complete -c oppty-router -n "__fish_oppty_router_using_subcommand explain" -l database-url -d 'Connect with this connection string instead of the config\'s `database.url` (and without its `database.password_file`): for a DBA running `install` or `grants` as the database owner' -r
complete -c oppty-router -n "__fish_oppty_router_using_subcommand explain" -l json -d 'Print the decisions as JSON (each with its stored explanation)'
complete -c oppty-router -n "__fish_oppty_router_using_subcommand explain" -s h -l help -d 'Print help'
complete -c oppty-router -n "__fish_oppty_router_using_subcommand simulate" -l rules -d 'The candidate rules directory (a copy of the rules, with your edits)' -r -F
complete -c oppty-router -n "__fish_oppty_router_using_subcommand simulate" -l since -d 'Replay the opportunities first decided this recently (`7d`, `36h`)' -r
complete -c oppty-router -n "__fish_oppty_router_using_subcommand simulate" -l opportunities -d 'Replay exactly these opportunities: a file with one id a line (or a CSV, id first)' -r -F
complete -c oppty-router -n "__fish_oppty_router_using_subcommand simulate" -l html -d 'Also write the report as one self-contained HTML page (charts inline, no network)' -r -F
complete -c oppty-router -n "__fish_oppty_router_using_subcommand simulate" -l seed -d 'The replay\'s randomness (random picks, ties): the same seed gives the same replay' -r
complete -c oppty-router -n "__fish_oppty_router_using_subcommand simulate" -s c -l config -d 'The daemon config' -r -F
complete -c oppty-router -n "__fish_oppty_router_using_subcommand simulate" -l database-url -d 'Connect with this connection string instead of the config\'s `database.url` (and without its `database.password_file`): for a DBA running `install` or `grants` as the database owner' -r
complete -c oppty-router -n "__fish_oppty_router_using_subcommand simulate" -l in-force -d 'Replay each decision with the rule set that made it (as the router kept it), from what it saw: what the router did, decided again; anything that would change is a fault'
complete -c oppty-router -n "__fish_oppty_router_using_subcommand simulate" -l json -d 'Print the report as JSON'
complete -c oppty-router -n "__fish_oppty_router_using_subcommand simulate" -s h -l help -d 'Print help'
complete -c oppty-router -n "__fish_oppty_router_using_subcommand report" -l since -d 'The opportunities first decided this recently (`30d`, `12h`)' -r
complete -c oppty-router -n "__fish_oppty_router_using_subcommand report" -l html -d 'Also write the report as one self-contained HTML page (charts inline, no network)' -r -F
complete -c oppty-router -n "__fish_oppty_router_using_subcommand report" -s c -l config -d 'The daemon config' -r -F
complete -c oppty-router -n "__fish_oppty_router_using_subcommand report" -l database-url -d 'Connect with this connection string instead of the config\'s `database.url` (and without its `database.password_file`): for a DBA running `install` or `grants` as the database owner' -r
complete -c oppty-router -n "__fish_oppty_router_using_subcommand report" -l json -d 'Print the report as JSON'
complete -c oppty-router -n "__fish_oppty_router_using_subcommand report" -s h -l help -d 'Print help'
complete -c oppty-router -n "__fish_oppty_router_using_subcommand console; and not __fish_seen_subcommand_from user help" -s c -l config -d 'The daemon config' -r -F
complete -c oppty-router -n "__fish_oppty_router_using_subcommand console; and not __fish_seen_subcommand_from user help" -l database-url -d 'Connect with this connection string instead of the config\'s `database.url` (and without its `database.password_file`): for a DBA running `install` or `grants` as the database owner' -r
complete -c oppty-router -n "__fish_oppty_router_using_subcommand console; and not __fish_seen_subcommand_from user help" -s h -l help -d 'Print help'
complete -c oppty-router -n "__fish_oppty_router_using_subcommand console; and not __fish_seen_subcommand_from user help" -f -a "user" -d 'The console\'s accounts (`console.users`)'
complete -c oppty-router -n "__fish_oppty_router_using_subcommand console; and not __fish_seen_subcommand_from user help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c oppty-router -n "__fish_oppty_router_using_subcommand console; and __fish_seen_subcommand_from user" -s c -l config -d 'The daemon config' -r -F
complete -c oppty-router -n "__fish_oppty_router_using_subcommand console; and __fish_seen_subcommand_from user" -l database-url -d 'Connect with this connection string instead of the config\'s `database.url` (and without its `database.password_file`): for a DBA running `install` or `grants` as the database owner' -r
complete -c oppty-router -n "__fish_oppty_router_using_subcommand console; and __fish_seen_subcommand_from user" -s h -l help -d 'Print help'
complete -c oppty-router -n "__fish_oppty_router_using_subcommand console; and __fish_seen_subcommand_from user" -f -a "add" -d 'Add an account, or change one\'s role and password: the password is asked for on the terminal (or read as the first line of stdin)'
complete -c oppty-router -n "__fish_oppty_router_using_subcommand console; and __fish_seen_subcommand_from user" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c oppty-router -n "__fish_oppty_router_using_subcommand console; and __fish_seen_subcommand_from help" -f -a "user" -d 'The console\'s accounts (`console.users`)'
complete -c oppty-router -n "__fish_oppty_router_using_subcommand console; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c oppty-router -n "__fish_oppty_router_using_subcommand completions" -s c -l config -d 'The daemon config' -r -F
complete -c oppty-router -n "__fish_oppty_router_using_subcommand completions" -l database-url -d 'Connect with this connection string instead of the config\'s `database.url` (and without its `database.password_file`): for a DBA running `install` or `grants` as the database owner' -r
complete -c oppty-router -n "__fish_oppty_router_using_subcommand completions" -s h -l help -d 'Print help'
complete -c oppty-router -n "__fish_oppty_router_using_subcommand manpage" -l dir -d 'Write `oppty-router.1` and `oppty-router-<command>.1` here' -r -F
complete -c oppty-router -n "__fish_oppty_router_using_subcommand manpage" -s c -l config -d 'The daemon config' -r -F
complete -c oppty-router -n "__fish_oppty_router_using_subcommand manpage" -l database-url -d 'Connect with this connection string instead of the config\'s `database.url` (and without its `database.password_file`): for a DBA running `install` or `grants` as the database owner' -r
complete -c oppty-router -n "__fish_oppty_router_using_subcommand manpage" -s h -l help -d 'Print help'
complete -c oppty-router -n "__fish_oppty_router_using_subcommand help; and not __fish_seen_subcommand_from run check install backfill uninstall demo requeue grants status schema unpause revert explain simulate report console completions manpage help" -f -a "run" -d 'Run the daemon: drain captured changes, route, write owners back'
complete -c oppty-router -n "__fish_oppty_router_using_subcommand help; and not __fish_seen_subcommand_from run check install backfill uninstall demo requeue grants status schema unpause revert explain simulate report console completions manpage help" -f -a "check" -d 'Validate the config and the rules (and the mapping against the database when reachable)'
complete -c oppty-router -n "__fish_oppty_router_using_subcommand help; and not __fish_seen_subcommand_from run check install backfill uninstall demo requeue grants status schema unpause revert explain simulate report console completions manpage help" -f -a "install" -d 'Create the router\'s schema and the capture triggers (idempotent)'
complete -c oppty-router -n "__fish_oppty_router_using_subcommand help; and not __fish_seen_subcommand_from run check install backfill uninstall demo requeue grants status schema unpause revert explain simulate report console completions manpage help" -f -a "backfill" -d 'Queue every open, unowned opportunity for routing (those from before `install`, or left behind); prints how many. Nothing already queued is queued twice'
complete -c oppty-router -n "__fish_oppty_router_using_subcommand help; and not __fish_seen_subcommand_from run check install backfill uninstall demo requeue grants status schema unpause revert explain simulate report console completions manpage help" -f -a "uninstall" -d 'Remove the capture triggers and the router\'s schema; the CRM\'s tables are untouched'
complete -c oppty-router -n "__fish_oppty_router_using_subcommand help; and not __fish_seen_subcommand_from run check install backfill uninstall demo requeue grants status schema unpause revert explain simulate report console completions manpage help" -f -a "demo" -d 'Everything on a throwaway database: sample CRM, live routing, summary, latency'
complete -c oppty-router -n "__fish_oppty_router_using_subcommand help; and not __fish_seen_subcommand_from run check install backfill uninstall demo requeue grants status schema unpause revert explain simulate report console completions manpage help" -f -a "requeue" -d 'Put opportunities left behind back in the queue: those the router left unassigned, or whose events were dead-lettered (after fixing the cause: see `status`)'
complete -c oppty-router -n "__fish_oppty_router_using_subcommand help; and not __fish_seen_subcommand_from run check install backfill uninstall demo requeue grants status schema unpause revert explain simulate report console completions manpage help" -f -a "grants" -d 'Print the GRANT statements a dedicated daemon role needs, in parts by who can grant them (the owners of the CRM\'s tables and of the router\'s schema, the database owner)'
complete -c oppty-router -n "__fish_oppty_router_using_subcommand help; and not __fish_seen_subcommand_from run check install backfill uninstall demo requeue grants status schema unpause revert explain simulate report console completions manpage help" -f -a "status" -d 'Show the daemon\'s state: rules in force, the latest refusal of new rules, the queue'
complete -c oppty-router -n "__fish_oppty_router_using_subcommand help; and not __fish_seen_subcommand_from run check install backfill uninstall demo requeue grants status schema unpause revert explain simulate report console completions manpage help" -f -a "schema" -d 'Print the JSON Schema of rule files (committed as config/rules.schema.json)'
complete -c oppty-router -n "__fish_oppty_router_using_subcommand help; and not __fish_seen_subcommand_from run check install backfill uninstall demo requeue grants status schema unpause revert explain simulate report console completions manpage help" -f -a "unpause" -d 'Lift a member\'s pause for letting opportunities lapse (see `status`); the daemon gives them work again from its next sweep'
complete -c oppty-router -n "__fish_oppty_router_using_subcommand help; and not __fish_seen_subcommand_from run check install backfill uninstall demo requeue grants status schema unpause revert explain simulate report console completions manpage help" -f -a "revert" -d 'Give the rules directory back the files of a version that was in force (as the router kept it), checked first as the daemon will check them; the daemon reloads them'
complete -c oppty-router -n "__fish_oppty_router_using_subcommand help; and not __fish_seen_subcommand_from run check install backfill uninstall demo requeue grants status schema unpause revert explain simulate report console completions manpage help" -f -a "explain" -d 'Show why the router assigned an opportunity the way it did'
complete -c oppty-router -n "__fish_oppty_router_using_subcommand help; and not __fish_seen_subcommand_from run check install backfill uninstall demo requeue grants status schema unpause revert explain simulate report console completions manpage help" -f -a "simulate" -d 'Replay past opportunities through a candidate rules directory, writing nothing: what each team and member would have received, fairness, fallbacks, and every owner that would change'
complete -c oppty-router -n "__fish_oppty_router_using_subcommand help; and not __fish_seen_subcommand_from run check install backfill uninstall demo requeue grants status schema unpause revert explain simulate report console completions manpage help" -f -a "report" -d 'What the router did: assignments per team, member and rule, fairness, fallbacks, reclaims'
complete -c oppty-router -n "__fish_oppty_router_using_subcommand help; and not __fish_seen_subcommand_from run check install backfill uninstall demo requeue grants status schema unpause revert explain simulate report console completions manpage help" -f -a "console" -d 'Serve the web console (a process of its own; `[console] listen`, localhost by default), or manage its accounts'
complete -c oppty-router -n "__fish_oppty_router_using_subcommand help; and not __fish_seen_subcommand_from run check install backfill uninstall demo requeue grants status schema unpause revert explain simulate report console completions manpage help" -f -a "completions" -d 'Print a shell completion script (bash, zsh, fish, elvish, powershell) to stdout'
complete -c oppty-router -n "__fish_oppty_router_using_subcommand help; and not __fish_seen_subcommand_from run check install backfill uninstall demo requeue grants status schema unpause revert explain simulate report console completions manpage help" -f -a "manpage" -d 'Print the man page (roff) to stdout, or write one page per command into a directory'
complete -c oppty-router -n "__fish_oppty_router_using_subcommand help; and not __fish_seen_subcommand_from run check install backfill uninstall demo requeue grants status schema unpause revert explain simulate report console completions manpage help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c oppty-router -n "__fish_oppty_router_using_subcommand help; and __fish_seen_subcommand_from console" -f -a "user" -d 'The console\'s accounts (`console.users`)'
