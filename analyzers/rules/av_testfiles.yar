/*
  Stowaway default rule pack: the ClamAV project's anti-virus test files (Debian: clamav-testfiles,
  /usr/share/clamav-testfiles), so that an installation without ClamAV still flags them.

  Written from the files' observed content, not from ClamAV's signatures: the test program clam.exe
  is a 544-byte PE whose import table names a function no DLL exports, "CLAMessageBoxA", and whose
  only section header is named "[CLAMAV]". The wrappers carry it as is (cpio, cab, pdf, OLE, TNEF,
  installers), base64-encoded (mail, HTML data: URLs), uuencoded, or as hexadecimal text (RTF
  objects); several packed copies keep a plain sentence saying what they are. Compressed wrappers
  (zip, gzip, bzip2, tar, 7z) are opened by the archive resolver and their member matched.
*/
import "hash"

rule ClamAV_Test_File
{
    meta:
        description = "ClamAV anti-virus test file (clam.exe, or a file embedding it)"
        severity = "low"
        reference = "https://docs.clamav.net/manual/Usage/Scanning.html"
    strings:
        $import = "CLAMessageBoxA"
        $section = "[CLAMAV]"
        $import_b64 = "CLAMessageBoxA" base64
        $section_b64 = "[CLAMAV]" base64
        // uuencode: base64's scheme over the characters ` ! " # ... _
        $import_uu = "CLAMessageBoxA" base64("`!\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_")
        $import_hex = "434c414d657373616765426f7841" nocase
        $section_hex = "5b434c414d41565d" nocase
    condition:
        ($import and $section) or ($import_b64 and $section_b64) or $import_uu or ($import_hex and $section_hex)
}

rule ClamAV_Test_File_Declared
{
    meta:
        description = "ClamAV anti-virus test file (a packed or embedded copy that says what it is)"
        severity = "low"
    strings:
        $sentence = /This is a ClamAV test file with (the )?embedded clam\.exe/ ascii wide
    condition:
        $sentence
}

/*
  Copies whose content gives nothing away: executables packed by ASPack, MEW, NSIS, PESpin, Petite,
  Upack, UPX, yC and AutoIt (ea05/ea06), InstallShield installers, and containers the resolver does
  not open (ARJ, CHM, SZDD, SIS, BinHex, imploded zip, and the tgz nested deeper than the resolver goes). Each is known by
  its size and SHA-256, both measured on Debian's clamav-testfiles 1.4.6+dfsg-0+deb12u1 (GPL-2.0 test
  data of the ClamAV project); the size test comes first, so no other file is hashed.
*/
rule ClamAV_Test_File_Known_Copy
{
    meta:
        description = "ClamAV anti-virus test file (a packed or wrapped copy, known by size and SHA-256)"
        severity = "low"
    condition:
        (filesize == 7680 and hash.sha256(0, filesize) == "fa2901d4e97497165ce275bd8a9e94fe5266ea7a0795d96e0e439da0c7645c36")  // clam-aspack.exe
        or (filesize == 1560 and hash.sha256(0, filesize) == "bfe7eeb1939e8bc16f90cb5d921437056e0e456a00a8ea3b31bd9754f6c89885")  // clam-mew.exe
        or (filesize == 47437 and hash.sha256(0, filesize) == "652847877739943f99273c1388c56c375cb6715b01c7135f7bab882a0be3f888")  // clam-nsis.exe
        or (filesize == 16384 and hash.sha256(0, filesize) == "1dba66766f99bbd55c28113775a54a9cc22d93735494be96237a4081be89e82b")  // clam-pespin.exe
        or (filesize == 4096 and hash.sha256(0, filesize) == "f4091b710d78322370e849381cddedc878bbe580563d993f4195b2bcb1ffc5b8")  // clam-petite.exe
        or (filesize == 1852 and hash.sha256(0, filesize) == "80a03f1b06996e084f54e6218019e1f0e2c3e789c72a9264145c8e0602c84702")  // clam-upack.exe
        or (filesize == 3072 and hash.sha256(0, filesize) == "d1973ca87229f403ef214905c4a9c2f2a4cca73e1b5b0217eb3f7595e706e16f")  // clam-upx.exe
        or (filesize == 6226 and hash.sha256(0, filesize) == "4ebe56972199136a749eca73eb221272cabf725436d6b939b8c1182383c562a9")  // clam-yc.exe
        or (filesize == 393 and hash.sha256(0, filesize) == "8fdcc534e30eb458ae180a32fc533b6d97635ba56ec8de5598e30be5396bba14")  // clam.arj
        or (filesize == 10950 and hash.sha256(0, filesize) == "f22f10a9fa67f984589d85db753b83e1e3dd6780aa9f425d0fa27fd545d9bd7e")  // clam.chm
        or (filesize == 211738 and hash.sha256(0, filesize) == "981564018dff1f07a4ce0afe4388a2804b5db94cfd22a9dd4d6047761041effc")  // clam.ea05.exe
        or (filesize == 257960 and hash.sha256(0, filesize) == "04e2ca3b7f3f55736bd3cd56c7c6b9e4423fa9574870d3ae316552c118e32fe3")  // clam.ea06.exe
        or (filesize == 833 and hash.sha256(0, filesize) == "1cf8e74b9f77c8a1cabf325670a9a01075713de50a2e0c5be9ff361d25f5f7f1")  // clam.exe.binhex
        or (filesize == 308 and hash.sha256(0, filesize) == "29a6a08fa2effe9ab4ee9fd7d7e72f13f621ad7d41fd980843e5005130c0fa8e")  // clam.exe.szdd
        or (filesize == 394 and hash.sha256(0, filesize) == "a8c0f51ad78f502417e8b9efaf0d2e067ac832d941500552f2aebc8e8f381f58")  // clam.impl.zip
        or (filesize == 596 and hash.sha256(0, filesize) == "2e75399c9f6fa7741db9ccf506de2895b3a78a3d574fa776c65f533b717555b5")  // clam.sis
        or (filesize == 1744032 and hash.sha256(0, filesize) == "124d5f640891430e4f7fa9bbb95c46601f132d6cfb070924c85f81e221acbe9b")  // clam_IScab_int.exe
        or (filesize == 1215239 and hash.sha256(0, filesize) == "d33908f09dfee2c0299618beb0b5b24fd40db0a8285f46841cbd2b42b179b58b")  // clam_ISmsi_ext.exe
        or (filesize == 1184248 and hash.sha256(0, filesize) == "f7531f276c9ce9558676a435d926c1234226215e4392c57143b589c470f7235f")  // clam_ISmsi_int.exe
        or (filesize == 3079 and hash.sha256(0, filesize) == "f2b5fd5eaf1c4526ac39559964dc360d28de673599b8676f8718307cbb38ef89")  // clam_cache_emax.tgz
}
