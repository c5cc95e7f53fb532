/*
  Stowaway default rule pack: web shells that run what the request carries.
  Each rule needs both an execution sink and request data flowing into it, so that ordinary
  server-side code that merely calls eval() or exec() does not match.
*/
rule Webshell_PHP_Eval_Request
{
    meta:
        description = "PHP web shell: eval/assert/system-like call on request data"
        severity = "critical"
    strings:
        $php = "<?" ascii
        $sink = /\b(eval|assert|system|exec|shell_exec|passthru|popen|proc_open|pcntl_exec|create_function)\s*\(\s*(@\s*)?((base64_decode|gzinflate|gzuncompress|str_rot13|stripslashes|urldecode|hex2bin)\s*\(\s*)*\$_(POST|GET|REQUEST|COOKIE|SERVER|FILES)\s*\[/ nocase ascii
        // one string per superglobal: with the alternation right after `$_`, YARA only has a short atom
        // to search for, and these two strings alone cost a fifth of the whole pack's scan time
        $backtick_post = /`\s*\$_POST\s*\[[^\]]{1,40}\]\s*`/ ascii
        $backtick_get = /`\s*\$_GET\s*\[[^\]]{1,40}\]\s*`/ ascii
        $backtick_request = /`\s*\$_REQUEST\s*\[[^\]]{1,40}\]\s*`/ ascii
        $backtick_cookie = /`\s*\$_COOKIE\s*\[[^\]]{1,40}\]\s*`/ ascii
        $varfunc_post = /\$_POST\s*\[[^\]]{1,40}\]\s*\(\s*\$_(POST|GET|REQUEST|COOKIE)\s*\[/ ascii
        $varfunc_get = /\$_GET\s*\[[^\]]{1,40}\]\s*\(\s*\$_(POST|GET|REQUEST|COOKIE)\s*\[/ ascii
        $varfunc_request = /\$_REQUEST\s*\[[^\]]{1,40}\]\s*\(\s*\$_(POST|GET|REQUEST|COOKIE)\s*\[/ ascii
        $varfunc_cookie = /\$_COOKIE\s*\[[^\]]{1,40}\]\s*\(\s*\$_(POST|GET|REQUEST|COOKIE)\s*\[/ ascii
        $preg_e = /preg_replace\s*\(\s*['"][^'"]{0,40}\/e['"]\s*,\s*\$_(POST|GET|REQUEST|COOKIE)/ nocase ascii
    condition:
        $php and any of ($sink, $backtick_*, $varfunc_*, $preg_e)
}

rule Webshell_JSP_Exec_Request
{
    meta:
        description = "JSP web shell: Runtime.exec or ProcessBuilder on request parameters"
        severity = "critical"
    strings:
        $jsp1 = "<%" ascii
        $jsp2 = "<jsp:" ascii
        $exec = /Runtime\s*\.\s*getRuntime\s*\(\s*\)\s*\.\s*exec\s*\(\s*request\s*\.\s*get(Parameter|Header|QueryString)/ ascii
        $pb = /new\s+ProcessBuilder\s*\([^;]{0,80}request\s*\.\s*get(Parameter|Header|QueryString)/ ascii
        $param_then_exec = /String\s+(\w+)\s*=\s*request\s*\.\s*getParameter\s*\([^;]{0,80};[\s\S]{0,400}getRuntime\s*\(\s*\)\s*\.\s*exec\s*\(/ ascii
    condition:
        ($jsp1 or $jsp2) and any of ($exec, $pb, $param_then_exec)
}

rule Webshell_ASP_Eval_Request
{
    meta:
        description = "ASP/ASPX web shell: Eval/Execute/Process.Start of request data"
        severity = "critical"
    strings:
        $asp1 = "<%" ascii
        $asp2 = "runat=\"server\"" nocase ascii
        $eval = /\b(eval|execute|executeglobal)\s*\(?\s*request\s*(\.\s*(item|form|querystring)\s*)?[\(\[]/ nocase ascii
        $proc = /Process\s*\.\s*Start\s*\([^;]{0,120}Request\s*(\.\s*(Item|Form|QueryString)\s*)?[\(\[]/ nocase ascii
        $jscript = /eval\s*\(\s*Request\s*\.\s*Item\s*\[/ nocase ascii
    condition:
        ($asp1 or $asp2) and any of ($eval, $proc, $jscript)
}
