/*
  Stowaway default rule pack: reverse shells, in scripts, cron jobs and one-liners.
*/
rule ReverseShell_Bash_DevTcp
{
    meta:
        description = "Bash reverse shell through /dev/tcp or /dev/udp"
        severity = "critical"
    strings:
        $a = /\b(ba|z|k)?sh\s+-i\s*[<>&0-9 ]{1,10}\/dev\/(tcp|udp)\/[\w.:-]+\/\d{1,5}/ ascii
        $b = /exec\s+\d+\s*<>\s*\/dev\/(tcp|udp)\/[\w.:-]+\/\d{1,5}/ ascii
        $c = />&\s*\/dev\/(tcp|udp)\/[\w.:-]+\/\d{1,5}\s+0>&1/ ascii
    condition:
        any of them
}

rule ReverseShell_Netcat_Exec
{
    meta:
        description = "Netcat reverse or bind shell (nc -e / -c, or a fifo piped through nc)"
        severity = "critical"
    strings:
        // HOST PORT around -e: a connection out, not the bind-shell examples tools' documentation quotes
        $e = /\b(nc|ncat|netcat)(\.traditional|\.openbsd)?\s+(-[a-z]+\s+){0,4}[\w.:][\w.:-]*\s+\d{1,5}\s+(-[a-z]+\s+){0,4}-[a-z]*[ec]\s*\/bin\/(ba)?sh\b/ ascii
        $e2 = /\b(nc|ncat|netcat)(\.traditional|\.openbsd)?\s+(-[a-z]+\s+){0,4}-[a-z]*[ec]\s*\/bin\/(ba)?sh\s+[\w.:][\w.:-]*\s+\d{1,5}/ ascii
        $fifo = /mkfifo\s+\S+\s*;?\s*(cat\s+\S+\s*\|\s*)?\/bin\/(ba)?sh\s+-i[^|\n]{0,40}\|\s*(nc|ncat|netcat)\s/ ascii
        $fifo2 = /\/bin\/(ba)?sh\s+-i\s+2>&1\s*\|\s*(nc|ncat|netcat)\s+[\w.:-]+\s+\d{1,5}\s*>\s*\S+/ ascii
    condition:
        any of them
}

rule ReverseShell_Python_Socket
{
    meta:
        description = "Python reverse shell: a connected socket duplicated onto a shell"
        severity = "critical"
    strings:
        $sock = "socket.socket(" ascii
        $connect = /\.connect\s*\(\s*\(/ ascii
        $dup = /os\.dup2\s*\(\s*\w+\.fileno\s*\(\s*\)\s*,\s*[012]\s*\)/ ascii
        $shell1 = /(subprocess\.(call|Popen|run)|os\.system|pty\.spawn|os\.exec\w*)\s*\(\s*\[?\s*['"](\/bin\/)?(ba)?sh['"]/ ascii
    condition:
        $sock and $connect and $dup and $shell1
}

rule ReverseShell_Perl_Socket
{
    meta:
        description = "Perl reverse shell: socket connected, STDIN/STDOUT redirected, shell executed"
        severity = "critical"
    strings:
        $sock1 = "use Socket" ascii
        $sock2 = "IO::Socket::INET" ascii
        $sock3 = /socket\s*\(\s*\w+\s*,\s*PF_INET/ ascii
        $redir = /open\s*\(\s*STD(IN|OUT|ERR)\s*,\s*["']?>&/ ascii
        $exec = /exec\s*\(?\s*["'](\/bin\/)?(ba)?sh(\s+-i)?["']/ ascii
    condition:
        any of ($sock*) and $redir and $exec
}

rule ReverseShell_Php_Socket
{
    meta:
        description = "PHP reverse shell: fsockopen with a shell bound to the socket"
        severity = "critical"
    strings:
        $php = "<?" ascii
        $sock = /fsockopen\s*\(/ ascii
        $shell = /(exec|shell_exec|system|passthru|proc_open|popen)\s*\(\s*["'](\/bin\/)?(ba)?sh\s+-i\s*<&\s*\d/ ascii
    condition:
        $php and $sock and $shell
}
