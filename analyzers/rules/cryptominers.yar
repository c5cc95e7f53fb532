/*
  Stowaway default rule pack: cryptocurrency miners, their configurations and their pools.
*/
rule Miner_Stratum_Pool_URL
{
    meta:
        description = "Stratum mining-pool URL"
        severity = "high"
    strings:
        $s = /stratum\d?\+(tcp|ssl|tls|ws|wss):\/\/[\w.-]{3,}(:\d{2,5})?/ nocase ascii wide
    condition:
        $s
}

rule Miner_XMRig_Config
{
    meta:
        description = "XMRig miner configuration (pools with url/user, CPU or RandomX settings)"
        severity = "high"
    strings:
        $pools = "\"pools\"" ascii
        $url = "\"url\"" ascii
        $user = "\"user\"" ascii
        $k1 = "\"donate-level\"" ascii
        $k2 = "\"huge-pages\"" ascii
        $k3 = "\"randomx\"" ascii
        $k4 = "\"max-threads-hint\"" ascii
        $k5 = "\"nicehash\"" ascii
        $k6 = /"algo"\s*:\s*"(rx\/|cn\/|cn-|randomx|cryptonight|argon2|kawpow|ghostrider)/ ascii
        $k7 = "\"cpu-affinity\"" ascii
    condition:
        filesize < 2MB and $pools and $url and $user and 2 of ($k*)
}

rule Miner_Binary_Strings
{
    meta:
        description = "Cryptocurrency miner executable (XMRig, cpuminer, cgminer, ccminer and relatives)"
        severity = "high"
    strings:
        $x1 = "XMRig" ascii
        $x2 = "xmrig.com" ascii
        $x3 = "--donate-level" ascii
        $c1 = "cpuminer" ascii
        $c2 = "cgminer" ascii
        $c3 = "ccminer" ascii
        $c4 = "minerd" fullword ascii
        $a1 = "cryptonight" nocase ascii
        $a2 = "randomx" nocase ascii
        $a3 = "stratum+tcp" ascii
        $a4 = "mining.subscribe" ascii
        $a5 = "mining.authorize" ascii
        $a6 = "hashrate" nocase ascii
    condition:
        (uint32(0) == 0x464c457f or uint16(0) == 0x5a4d or uint32(0) == 0xfeedfacf)
        and 1 of ($x*, $c*) and 2 of ($a*)
}

rule Miner_Known_Pool_Domains
{
    meta:
        description = "Configuration or script naming a well-known Monero mining pool with a wallet address"
        severity = "medium"
    strings:
        $p1 = "supportxmr.com" nocase ascii
        $p2 = "minexmr.com" nocase ascii
        $p3 = "nanopool.org" nocase ascii
        $p4 = "moneroocean.stream" nocase ascii
        $p5 = "hashvault.pro" nocase ascii
        $p6 = "c3pool.com" nocase ascii
        $p7 = "2miners.com" nocase ascii
        $p8 = "f2pool.com" nocase ascii
        $p9 = "herominers.com" nocase ascii
        $p10 = "xmrpool.eu" nocase ascii
        // a Monero address as a miner's user name (config key or command-line option); anchored on
        // the key so that YARA has a literal to look for
        $wallet1 = /"user"\s*:\s*"4[0-9AB][1-9A-HJ-NP-Za-km-z]{93}/ ascii
        $wallet2 = /--user[ =]4[0-9AB][1-9A-HJ-NP-Za-km-z]{93}/ ascii
        $wallet3 = /\s-u\s+4[0-9AB][1-9A-HJ-NP-Za-km-z]{93}/ ascii
    condition:
        filesize < 5MB and any of ($p*) and any of ($wallet*)
}
