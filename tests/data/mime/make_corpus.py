#!/usr/bin/python3
"""Write the MIME corpus (NNN-name.eml) into this directory.

  0NN-*.eml  messages written here to look like real mail (clients, lists,
             bounces, broken mailers), base64 attachments generated
             deterministically;
  1NN-*.eml  Python's email test messages (libpython3.11-testsuite,
             /usr/lib/python3.11/test/test_email/data/msg_*.txt, PSF
             licence), line ends made CRLF.

Every message is stored exactly as APPENDed to Dovecot (CRLF line ends,
except where the case is the line ends themselves).  Run make_expected.py
afterwards to refresh the expected outputs.
"""
import base64
import os
import struct
import sys
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
PYDATA = "/usr/lib/python3.11/test/test_email/data"


def crlf(text):
    """LF -> CRLF for str (latin-1 encoded) or bytes."""
    if isinstance(text, str):
        text = text.encode("latin-1")
    return text.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def u8(s):
    """A str holding UTF-8 bytes, to mix into latin-1 templates."""
    return s.encode("utf-8").decode("latin-1")


def b64(data, width=76):
    s = base64.b64encode(data).decode()
    return "\n".join(s[i:i + width] for i in range(0, len(s), width)) + "\n"


def png(w, h, seed):
    """A small valid PNG."""
    raw = b"".join(b"\x00" + b"".join(bytes(((x * seed + y * 7) & 0xff, (x + y) & 0xff,
                                              (seed * 31) & 0xff)) for x in range(w))
                   for y in range(h))

    def chunk(t, d):
        c = struct.pack(">I", len(d)) + t + d
        return c + struct.pack(">I", zlib.crc32(t + d) & 0xffffffff)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def pdf(title):
    body = ("%%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n"
            "2 0 obj << /Type /Pages /Kids [3 0 R] /Count 1 >> endobj\n"
            "3 0 obj << /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] "
            "/Contents 4 0 R >> endobj\n"
            "4 0 obj << /Length 44 >> stream\nBT /F1 24 Tf 72 720 Td (%s) Tj ET\n"
            "endstream endobj\ntrailer << /Root 1 0 R >>\n%%%%EOF\n") % title
    return body.encode() + bytes(range(256))


def qp(s):
    import quopri
    return quopri.encodestring(s.encode("utf-8") if isinstance(s, str) else s).decode()


M = {}

M["001-alternative-text-html"] = """\
Return-Path: <newsletter@shop.example>
Received: from mail.shop.example (mail.shop.example [192.0.2.10])
	by mx.example.org with ESMTPS id 4Q8k2L0ZqXz9sT
	for <alice@example.org>; Tue, 14 Nov 2023 09:12:01 +0100 (CET)
From: "Shop Example" <newsletter@shop.example>
To: alice@example.org
Subject: Your order #10442 has shipped
Date: Tue, 14 Nov 2023 08:11:58 +0000
Message-ID: <20231114081158.10442@shop.example>
MIME-Version: 1.0
Content-Type: multipart/alternative; boundary="----=_Part_11_2046810.1699949518"

------=_Part_11_2046810.1699949518
Content-Type: text/plain; charset=UTF-8
Content-Transfer-Encoding: quoted-printable

""" + qp(u"Hello Alice,\n\nyour order #10442 is on its way \u2013 expect it on Thursday.\n\nTrack it: https://shop.example/t/10442\n") + """
------=_Part_11_2046810.1699949518
Content-Type: text/html; charset=UTF-8
Content-Transfer-Encoding: quoted-printable

""" + qp(u"<!DOCTYPE html><html><body><p>Hello Alice,</p><p>your order <b>#10442</b> is on its way \u2013 expect it on Thursday.</p><p><a href=\"https://shop.example/t/10442\">Track it</a></p></body></html>\n") + """
------=_Part_11_2046810.1699949518--
"""

M["002-mixed-pdf-attachment"] = """\
From: Bob Builder <bob@builder.example>
To: Alice <alice@example.org>
Cc: accounts@builder.example
Subject: Invoice 2023-118
Date: Wed, 15 Nov 2023 16:40:12 +0100
Message-ID: <b1f3e0aa-77c1-4d1e-9c58-5c0f1a3e2b11@builder.example>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="000000000000a1b2c3d4e5f60718"

--000000000000a1b2c3d4e5f60718
Content-Type: text/plain; charset="UTF-8"

Hi Alice,

please find the invoice attached.

Bob

--000000000000a1b2c3d4e5f60718
Content-Type: application/pdf; name="invoice-2023-118.pdf"
Content-Disposition: attachment; filename="invoice-2023-118.pdf"
Content-Transfer-Encoding: base64
Content-ID: <f_lp0x1y2z0>
X-Attachment-Id: f_lp0x1y2z0

""" + b64(pdf("Invoice 2023-118")) + """--000000000000a1b2c3d4e5f60718--
"""

M["003-mixed-png-inline-and-attachment"] = """\
From: Carol <carol@photos.example>
To: alice@example.org
Subject: Photos from the trip
Date: Thu, 16 Nov 2023 10:01:00 -0500
Message-ID: <CAF7xYz123@mail.photos.example>
MIME-Version: 1.0
Content-Type: multipart/mixed;
 boundary="------------x7SVv0vQqIhF7AYGvK9mK1ZL"
User-Agent: Mozilla Thunderbird

This is a multi-part message in MIME format.
--------------x7SVv0vQqIhF7AYGvK9mK1ZL
Content-Type: text/plain; charset=UTF-8; format=flowed
Content-Transfer-Encoding: 7bit

Two pictures, one inline and one attached.

--------------x7SVv0vQqIhF7AYGvK9mK1ZL
Content-Type: image/png; name="beach.png"
Content-Disposition: inline; filename="beach.png"
Content-Transfer-Encoding: base64

""" + b64(png(8, 6, 3)) + """--------------x7SVv0vQqIhF7AYGvK9mK1ZL
Content-Type: image/png; name="sunset.png"
Content-Disposition: attachment; filename="sunset.png"; size=180;
 creation-date="Thu, 16 Nov 2023 09:58:00 GMT"
Content-Transfer-Encoding: base64

""" + b64(png(10, 4, 9)) + """
--------------x7SVv0vQqIhF7AYGvK9mK1ZL--
"""

M["004-related-cid-images"] = """\
From: Marketing <news@brand.example>
To: alice@example.org
Subject: =?UTF-8?Q?Black_Friday_=E2=80=93_up_to_50=25_off?=
Date: Fri, 24 Nov 2023 06:00:00 +0000
Message-ID: <bf2023.a1.77@brand.example>
MIME-Version: 1.0
Content-Type: multipart/related; type="text/html";
	boundary="=_related 0041A3C8C1258A6E_="

--=_related 0041A3C8C1258A6E_=
Content-Type: text/html; charset="utf-8"
Content-Transfer-Encoding: 8bit

<html><body><img src="cid:logo@brand.example"><h1>Black Friday """ + u8(u"\u2013") + """ up to 50% off</h1>
<img src="cid:banner@brand.example"></body></html>

--=_related 0041A3C8C1258A6E_=
Content-Type: image/png; name="logo.png"
Content-ID: <logo@brand.example>
Content-Transfer-Encoding: base64
Content-Disposition: inline; filename="logo.png"

""" + b64(png(4, 4, 1)) + """
--=_related 0041A3C8C1258A6E_=
Content-Type: image/png
Content-ID: <banner@brand.example>
Content-Transfer-Encoding: base64

""" + b64(png(16, 2, 5)) + """
--=_related 0041A3C8C1258A6E_=--
"""

M["005-outlook-mixed-alternative-related"] = """\
From: Dan Director <dan@corp.example>
To: Alice <alice@example.org>; "Eve, Ops" <eve@corp.example>
Subject: RE: Q4 planning
Thread-Topic: Q4 planning
Thread-Index: AdoZ3f7kYt0QwZb1T0+7cmR0ZW5kZA==
Date: Mon, 20 Nov 2023 14:22:31 +0000
Message-ID: <DB9PR04MB8417E1C3@DB9PR04MB8417.eurprd04.prod.outlook.com>
References: <DB9PR04MB8417A0B1@DB9PR04MB8417.eurprd04.prod.outlook.com>
In-Reply-To: <DB9PR04MB8417A0B1@DB9PR04MB8417.eurprd04.prod.outlook.com>
Accept-Language: en-US
Content-Language: en-US
X-MS-Has-Attach: yes
MIME-Version: 1.0
Content-Type: multipart/mixed;
	boundary="_004_DB9PR04MB8417E1C3DB9PR04MB8417eurp_"

--_004_DB9PR04MB8417E1C3DB9PR04MB8417eurp_
Content-Type: multipart/related;
	boundary="_003_DB9PR04MB8417E1C3DB9PR04MB8417eurp_";
	type="multipart/alternative"

--_003_DB9PR04MB8417E1C3DB9PR04MB8417eurp_
Content-Type: multipart/alternative;
	boundary="_000_DB9PR04MB8417E1C3DB9PR04MB8417eurp_"

--_000_DB9PR04MB8417E1C3DB9PR04MB8417eurp_
Content-Type: text/plain; charset="us-ascii"
Content-Transfer-Encoding: quoted-printable

Agreed, see the chart.=20

Dan

--_000_DB9PR04MB8417E1C3DB9PR04MB8417eurp_
Content-Type: text/html; charset="us-ascii"
Content-Transfer-Encoding: quoted-printable

<html><body><p>Agreed, see the chart.</p><img src=3D"cid:image001.png@01DA1B1=
C.0F2E5A10"><p>Dan</p></body></html>

--_000_DB9PR04MB8417E1C3DB9PR04MB8417eurp_--

--_003_DB9PR04MB8417E1C3DB9PR04MB8417eurp_
Content-Type: image/png; name="image001.png"
Content-Description: image001.png
Content-Disposition: inline; filename="image001.png"; size=120;
	creation-date="Mon, 20 Nov 2023 14:22:31 GMT";
	modification-date="Mon, 20 Nov 2023 14:22:31 GMT"
Content-ID: <image001.png@01DA1B1C.0F2E5A10>
Content-Transfer-Encoding: base64

""" + b64(png(6, 6, 2)) + """
--_003_DB9PR04MB8417E1C3DB9PR04MB8417eurp_--

--_004_DB9PR04MB8417E1C3DB9PR04MB8417eurp_
Content-Type: application/vnd.openxmlformats-officedocument.spreadsheetml.sheet;
	name="Q4 plan.xlsx"
Content-Description: Q4 plan.xlsx
Content-Disposition: attachment; filename="Q4 plan.xlsx"; size=300;
	creation-date="Mon, 20 Nov 2023 14:20:11 GMT";
	modification-date="Mon, 20 Nov 2023 14:22:31 GMT"
Content-Transfer-Encoding: base64

""" + b64(bytes(range(200)) + b"PK\x03\x04" * 25) + """
--_004_DB9PR04MB8417E1C3DB9PR04MB8417eurp_--
"""

INNER_FWD = """\
From: Frank <frank@old.example>
To: Grace <grace@corp.example>
Subject: Original report
Date: Sat, 11 Nov 2023 08:00:00 +0200
Message-ID: <orig-report-1@old.example>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="inner-1"

--inner-1
Content-Type: text/plain; charset=ISO-8859-1
Content-Transfer-Encoding: quoted-printable

Here is the report, G=FCnter says hi.

--inner-1
Content-Type: text/csv; charset=us-ascii; name=report.csv
Content-Disposition: attachment; filename=report.csv

date,value
2023-11-01,17
2023-11-02,23

--inner-1--
"""

MIDDLE_FWD = """\
From: Grace <grace@corp.example>
To: Heidi <heidi@corp.example>
Subject: Fwd: Original report
Date: Mon, 13 Nov 2023 09:30:00 +0100
Message-ID: <fwd-1@corp.example>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="middle-2"

--middle-2
Content-Type: text/plain; charset=utf-8

Heidi, FYI.

--middle-2
Content-Type: message/rfc822
Content-Disposition: attachment; filename="Original report.eml"

""" + INNER_FWD + """
--middle-2--
"""

M["006-forward-nested-twice"] = """\
From: Heidi <heidi@corp.example>
To: alice@example.org
Subject: Fwd: Fwd: Original report
Date: Tue, 14 Nov 2023 11:00:00 +0100
Message-ID: <fwd-2@corp.example>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="outer-3"

--outer-3
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: 8bit

Alice, see below """ + u8(u"\u2192") + """ forwarded twice.

--outer-3
Content-Type: message/rfc822; name="Fwd: Original report.eml"
Content-Description: Fwd: Original report

""" + MIDDLE_FWD + """
--outer-3--
"""

M["007-8bit-utf8-headers-and-body"] = u8(u"""\
From: Jürgen Müller <juergen@beispiel.example>
To: Zoë <zoe@example.org>
Subject: Grüße aus Köln – 東京 – Привет
Date: Wed, 22 Nov 2023 18:00:00 +0100
Message-ID: <utf8-8bit-1@beispiel.example>
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: 8bit

Liebe Zoë,

schöne Grüße – 東京 ist großartig. Привет!

Jürgen
""")

M["008-latin1-qp-rfc2047"] = """\
From: =?ISO-8859-1?Q?Fran=E7ois_P=E9rez?= <francois@exemple.example>
To: =?iso-8859-1?q?J=F6rg?= <joerg@example.org>
Subject: =?ISO-8859-1?Q?R=E9union_de_l'=E9quipe?= =?ISO-8859-1?Q?_=E0_midi?=
Date: Thu, 23 Nov 2023 07:45:00 +0100
Message-ID: <latin1-qp@exemple.example>
MIME-Version: 1.0
Content-Type: text/plain; charset=ISO-8859-1
Content-Transfer-Encoding: quoted-printable

Bonjour J=F6rg,

la r=E9union est d=E9plac=E9e =E0 midi. =C7a te va=3F

Fran=E7ois
"""

M["009-windows-1252-8bit"] = ("""\
From: =?windows-1252?Q?=93Quoted=94_Sender?= <sender@legacy.example>
To: alice@example.org
Subject: =?windows-1252?B?k1NtYXJ0IHF1b3Rlc5Qg4oCTIGFuZCBhbiBlbOlwc2lz?=
Date: Thu, 23 Nov 2023 12:00:00 -0800
Message-ID: <cp1252@legacy.example>
MIME-Version: 1.0
Content-Type: text/plain; charset="windows-1252"
Content-Transfer-Encoding: 8bit

""" + "\x93Smart quotes\x94 \x96 and a euro sign \x80 and caf\xe9.\n")

M["010-iso-2022-jp"] = ("""\
From: =?ISO-2022-JP?B?GyRCOzNFRBsoQiAbJEJCQE86GyhC?= <yamada@example.jp>
To: alice@example.org
Subject: =?ISO-2022-JP?B?GyRCJDMkcyRLJEEkTxsoQg==?=
Date: Fri, 24 Nov 2023 10:00:00 +0900
Message-ID: <iso2022jp-1@example.jp>
MIME-Version: 1.0
Content-Type: text/plain; charset=ISO-2022-JP
Content-Transfer-Encoding: 7bit

""" + "\x1b$B$3$s$K$A$O!#\x1b(B\nHello in JIS.\n")

M["011-koi8-r"] = ("""\
From: =?KOI8-R?B?6dfBziDwxdTSz9c=?= <ivan@primer.example>
To: alice@example.org
Subject: =?koi8-r?B?8NLJ18XULCDNydI=?=
Date: Sat, 25 Nov 2023 15:00:00 +0300
Message-ID: <koi8r-1@primer.example>
MIME-Version: 1.0
Content-Type: text/plain; charset="koi8-r"
Content-Transfer-Encoding: 8bit

""" + "\xf0\xd2\xc9\xd7\xc5\xd4, \xcd\xc9\xd2!\n")

M["012-rfc2231-filenames"] = """\
From: Ines <ines@files.example>
To: alice@example.org
Subject: Files with long and non-ASCII names
Date: Sun, 26 Nov 2023 09:00:00 +0100
Message-ID: <rfc2231-1@files.example>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="rfc2231"

--rfc2231
Content-Type: text/plain

Three attachments.
--rfc2231
Content-Type: application/octet-stream;
 name*=UTF-8''%E2%82%AC%20rates%202024.bin
Content-Disposition: attachment;
 filename*=UTF-8''%E2%82%AC%20rates%202024.bin
Content-Transfer-Encoding: base64

AAECAwQFBgcICQ==
--rfc2231
Content-Type: application/pdf;
 name*0*=iso-8859-1'de'Gr%FC%DFe%20aus%20;
 name*1="dem sch";
 name*2*=%F6nen%20S%FCden.pdf
Content-Disposition: attachment;
 filename*0*=iso-8859-1'de'Gr%FC%DFe%20aus%20;
 filename*1="dem sch";
 filename*2*=%F6nen%20S%FCden.pdf
Content-Transfer-Encoding: base64

JVBERi0xLjQK
--rfc2231
Content-Type: text/plain; charset=us-ascii;
 title*1="part two";
 title*0="part one, ";
 Name="Plain \\"quoted\\" name.txt"
Content-Disposition: attachment; filename="=?UTF-8?B?4oKsLnR4dA==?="

100%
--rfc2231--
"""

M["013-missing-final-boundary"] = """\
From: truncated@sender.example
To: alice@example.org
Subject: Cut off in transit
Date: Mon, 27 Nov 2023 10:00:00 +0000
Message-ID: <cut-1@sender.example>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="never-closed"

--never-closed
Content-Type: text/plain; charset=utf-8

First part.

--never-closed
Content-Type: application/octet-stream; name="data.bin"
Content-Transfer-Encoding: base64

""" + b64(bytes(range(120)))

M["014-wrong-boundary"] = """\
From: broken@mailer.example
To: alice@example.org
Subject: Declared boundary never appears
Date: Mon, 27 Nov 2023 11:00:00 +0000
MIME-Version: 1.0
Content-Type: multipart/alternative; boundary="declared"

--actual
Content-Type: text/plain

plain
--actual
Content-Type: text/html

<p>html</p>
--actual--
"""

M["015-boundary-quoted-specials"] = """\
From: quoter@example.net
To: alice@example.org
Subject: Boundary with specials
Date: Tue, 28 Nov 2023 08:00:00 +0000
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="=_?:;, ()'+_-./=abc"

preamble that is ignored
--=_?:;, ()'+_-./=abc
Content-Type: text/plain

one
--=_?:;, ()'+_-./=abc
Content-Type: text/plain; charset=us-ascii

two
--=_?:;, ()'+_-./=abc--
epilogue that is ignored
"""

M["016-overlong-lines"] = ("""\
From: longline@example.net
To: alice@example.org
Subject: """ + "Very long subject " * 60 + """
X-Long-Header: """ + "x" * 3000 + """
Date: Tue, 28 Nov 2023 09:00:00 +0000
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="long"

--long
Content-Type: text/plain; charset=us-ascii

""" + "0123456789" * 1000 + """
--long
Content-Type: text/html; charset=us-ascii

<p>""" + "word " * 4000 + """</p>
--long--
""")

M["017-lf-only"] = """\
From: unix@lf.example
To: alice@example.org
Subject: Stored with LF line ends
Date: Tue, 28 Nov 2023 10:00:00 +0000
MIME-Version: 1.0
Content-Type: multipart/alternative; boundary="lf"

--lf
Content-Type: text/plain

line one
line two

--lf
Content-Type: text/html

<p>line one<br>line two</p>
--lf--
"""

M["019-headers-only"] = """\
From: headers@only.example
To: alice@example.org
Subject: No body and no empty line
Date: Tue, 28 Nov 2023 11:00:00 +0000
Message-ID: <hdr-only@only.example>"""

M["020-nul-bytes"] = ("""\
From: "Nul\x00Name" <nul@bytes.example>
To: alice@example.org
Subject: NUL\x00in subject
Date: Tue, 28 Nov 2023 12:00:00 +0000
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="nul"

--nul
Content-Type: text/plain
Content-Description: desc\x00with nul

binary\x00body\x00text
--nul
Content-Type: application/octet-stream

\x00\x00\x00\x00
--nul--
""")

M["021-digest"] = """\
From: list-digest@lists.example
To: alice@example.org
Subject: Example-list Digest, Vol 12, Issue 3
Date: Wed, 29 Nov 2023 12:00:00 +0000
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="===============digest-outer=="

--===============digest-outer==
Content-Type: text/plain; charset="us-ascii"
Content-Description: Digest table of contents

Today's Topics:

   1. First topic (Ann)
   2. Second topic (Ben)

--===============digest-outer==
Content-Type: multipart/digest; boundary="===============digest-inner=="

--===============digest-inner==

From: Ann <ann@lists.example>
Subject: First topic
Date: Tue, 28 Nov 2023 10:00:00 +0000
Message-ID: <ann-1@lists.example>

Hello list.

--===============digest-inner==
Content-Type: message/rfc822

From: Ben <ben@lists.example>
Subject: Second topic
MIME-Version: 1.0
Content-Type: text/plain; charset=utf-8

Hi Ann.

--===============digest-inner==
Content-Type: text/plain; charset="us-ascii"
Content-Description: Digest Footer

_______________________________________________
Example-list mailing list

--===============digest-inner==--

--===============digest-outer==--
"""

M["022-boundary-prefix-of-another"] = """\
From: nested@example.net
To: alice@example.org
Subject: Inner boundary starts with the outer one
Date: Wed, 29 Nov 2023 13:00:00 +0000
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="abc"

--abc
Content-Type: multipart/alternative; boundary="abc-1"

--abc-1
Content-Type: text/plain

inner plain
--abc-1
Content-Type: text/html

<p>inner html</p>
--abc-1--

--abc
Content-Type: text/plain

outer second
--abc--
"""

M["023-same-boundary-nested"] = """\
From: reuse@example.net
To: alice@example.org
Subject: The same boundary at two levels
Date: Wed, 29 Nov 2023 14:00:00 +0000
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="same"

--same
Content-Type: multipart/alternative; boundary="same"

--same
Content-Type: text/plain

a
--same--
--same
Content-Type: text/plain

b
--same--
"""

M["024-outer-closes-inner"] = """\
From: closer@example.net
To: alice@example.org
Subject: The outer boundary ends an unterminated inner multipart
Date: Wed, 29 Nov 2023 15:00:00 +0000
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="OUTER"

--OUTER
Content-Type: multipart/alternative; boundary="INNER"

--INNER
Content-Type: text/plain

inner text, no closing inner boundary follows
--OUTER
Content-Type: text/plain

second outer part
--OUTER--
"""

M["025-rfc822-base64"] = """\
From: gateway@example.net
To: alice@example.org
Subject: A message/rfc822 part in base64
Date: Wed, 29 Nov 2023 16:00:00 +0000
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="b64msg"

--b64msg
Content-Type: text/plain

See the attached message.
--b64msg
Content-Type: message/rfc822
Content-Transfer-Encoding: base64

""" + b64(b"From: inner@example.net\r\nSubject: hidden\r\n\r\nbody\r\n") + """--b64msg--
"""

M["026-calendar-invite"] = """\
From: Organizer <organizer@cal.example>
To: alice@example.org
Subject: Invitation: Design review @ Thu Nov 30, 2023 10am - 11am (UTC)
Date: Wed, 29 Nov 2023 17:00:00 +0000
Message-ID: <invite-1@cal.example>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="000000000000cal1"

--000000000000cal1
Content-Type: multipart/alternative; boundary="000000000000cal2"

--000000000000cal2
Content-Type: text/plain; charset="UTF-8"; format=flowed; delsp=yes
Content-Transfer-Encoding: base64

""" + b64(u"You have been invited to the following event.\nTitle: Design review\n".encode()) + """
--000000000000cal2
Content-Type: text/calendar; charset="UTF-8"; method=REQUEST
Content-Transfer-Encoding: 7bit

BEGIN:VCALENDAR
PRODID:-//Example//Calendar 1.0//EN
VERSION:2.0
METHOD:REQUEST
BEGIN:VEVENT
DTSTART:20231130T100000Z
DTEND:20231130T110000Z
UID:invite-1@cal.example
SUMMARY:Design review
END:VEVENT
END:VCALENDAR

--000000000000cal2--

--000000000000cal1
Content-Type: application/ics; name="invite.ics"
Content-Disposition: attachment; filename="invite.ics"
Content-Transfer-Encoding: base64

QkVHSU46VkNBTEVOREFSDQpFTkQ6VkNBTEVOREFSDQo=
--000000000000cal1--
"""

M["027-pgp-signed"] = """\
From: Mallory Signer <signer@pgp.example>
To: alice@example.org
Subject: Signed message
Date: Thu, 30 Nov 2023 08:00:00 +0000
Message-ID: <signed-1@pgp.example>
MIME-Version: 1.0
Content-Type: multipart/signed; micalg=pgp-sha256;
 protocol="application/pgp-signature";
 boundary="signed-boundary-XYZ"

This is an OpenPGP/MIME signed message (RFC 4880 and 3156)
--signed-boundary-XYZ
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: quoted-printable

Signed text.

--signed-boundary-XYZ
Content-Type: application/pgp-signature; name="OpenPGP_signature.asc"
Content-Description: OpenPGP digital signature
Content-Disposition: attachment; filename="OpenPGP_signature.asc"

-----BEGIN PGP SIGNATURE-----

wnsEARYIACMWIQRZ3Y1fakeSignatureDataForTestsOnly0000000000000000
=abcd
-----END PGP SIGNATURE-----

--signed-boundary-XYZ--
"""

M["028-dsn-bounce"] = """\
Return-Path: <>
From: Mail Delivery System <MAILER-DAEMON@mx.example.org>
To: alice@example.org
Subject: Undelivered Mail Returned to Sender
Date: Thu, 30 Nov 2023 09:00:00 +0000 (UTC)
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status;
	boundary="4Sh3Qm1xyz.1701334800/mx.example.org"
Message-Id: <20231130090000.4Sh3Qm1xyz@mx.example.org>

This is a MIME-encapsulated message.

--4Sh3Qm1xyz.1701334800/mx.example.org
Content-Description: Notification
Content-Type: text/plain; charset=us-ascii

I'm sorry to have to inform you that your message could not
be delivered to one or more recipients.

--4Sh3Qm1xyz.1701334800/mx.example.org
Content-Description: Delivery report
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.org
Arrival-Date: Thu, 30 Nov 2023 08:59:58 +0000 (UTC)

Final-Recipient: rfc822; nobody@nowhere.example
Action: failed
Status: 5.1.1
Diagnostic-Code: smtp; 550 5.1.1 User unknown

--4Sh3Qm1xyz.1701334800/mx.example.org
Content-Description: Undelivered Message Headers
Content-Type: text/rfc822-headers

From: alice@example.org
To: nobody@nowhere.example
Subject: hello

--4Sh3Qm1xyz.1701334800/mx.example.org--
"""

M["029-all-content-fields"] = """\
From: fields@example.net
To: alice@example.org
Subject: Every Content-* field
Date: Thu, 30 Nov 2023 10:00:00 +0000
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="f"; charset=ignored
Content-Disposition: inline
Content-Language: en-GB, fr (French)
Content-Location: http://www.example.net/whole
Content-Description: outer

--f
Content-Type: TEXT/HTML; CHARSET="ISO-8859-1"; Format=Flowed
Content-ID: <part1.f@example.net>
Content-Description: The "HTML" part
Content-Transfer-Encoding: Quoted-Printable
Content-MD5: Q2hlY2sgSW50ZWdyaXR5IQ==
Content-Disposition: INLINE; FILENAME=index.html; size=42
Content-Language: de-AT
Content-Location:
 http://www.example.net/
 index.html

<p>caf=E9</p>
--f
Content-Type: application/x-unknown-thing; a=1; b="2"
Content-Transfer-Encoding: x-uuencode
Content-Disposition: attachment; filename="thing.uu"

begin 644 thing
`
end
--f--
"""

M["030-addresses"] = """\
From: "Joe Q. Public" <john.q.public@example.com>
Sender: Michael Jones <mjones@machine.example>
Reply-To: Pete(A nice \\) chap) <pete(his account)@silly.example(his host)>
To: Mary Smith <@node.test:mary@example.net>, , jdoe@example.org,
 "Giant; \\"Big\\" Box" <sysservices@example.net>
Cc: A Group:Ed Jones <c@a.test>,joe@where.test,John <jdoe@one.test>;,
 Undisclosed recipients:;, bob@example.com (Bob Smith)
Bcc: =?UTF-8?Q?Andr=C3=A9?= <andre@example.com>, localonly, @nolocal.example,
 "quoted local"@example.com, a.b.c@[192.0.2.1]
Subject: Addresses of every shape
Date: Thu, 13 Feb 1969 23:32:54 -0330
Message-ID: <addr-shapes@example.com>
In-Reply-To: <a@example.com> <b@example.com>

x
"""

M["031-broken-content-types"] = """\
From: broken-ct@example.net
To: alice@example.org
Subject: Broken Content-Type values
Date: Thu, 30 Nov 2023 11:00:00 +0000
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary=bct

--bct
Content-Type: text

bare text type
--bct
Content-Type: foo

bare unknown type
--bct
Content-Type: text/plain garbage; charset=utf-8

junk after the subtype
--bct
Content-Type:

empty value
--bct
Content-Type: text/; charset=utf-8

empty subtype
--bct
Content-Type: text/plain; charset; name=x; other="unterminated

broken parameters
--bct
Content-Type: text/plain; name==?utf-8?q?caf=C3=A9?=; a=b

unquoted encoded word
--bct
Content-Type: image/gif (comment) ; name = "spaced.gif" (another)

comments
--bct--
"""

M["032-duplicate-headers"] = """\
From: first@example.net
From: second@example.net
Subject: first subject
Subject: second subject
To: a@example.org
To: b@example.org
Date: Thu, 30 Nov 2023 12:00:00 +0000
Date: Fri, 01 Dec 2023 12:00:00 +0000
Message-ID: <first@example.net>
Message-ID: <second@example.net>
MIME-Version: 1.0
Content-Type: text/html; charset=utf-8
Content-Type: text/plain; charset=iso-8859-1
Content-Transfer-Encoding: base64
Content-Transfer-Encoding: 8bit
Content-Disposition: inline
Content-Disposition: attachment; filename=second.txt

PGI+aGk8L2I+
"""


def deep_multipart(levels):
    m = ("From: deep@example.net\nTo: alice@example.org\nSubject: %d nested multiparts\n"
         "MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=b0\n\n") % levels
    for i in range(1, levels):
        m += "--b%d\nContent-Type: multipart/mixed; boundary=b%d\n\n" % (i - 1, i)
    m += "--b%d\nContent-Type: text/plain\n\nleaf\n" % (levels - 1)
    for i in range(levels - 1, -1, -1):
        m += "--b%d--\n" % i
    return m


def deep_rfc822(levels):
    m = ("From: deep@example.net\nTo: alice@example.org\nSubject: %d nested messages\n"
         "MIME-Version: 1.0\nContent-Type: message/rfc822\n\n") % levels
    for i in range(1, levels):
        m += "Subject: level %d\nContent-Type: message/rfc822\n\n" % i
    return m + "Subject: leaf\n\nleaf\n"


def many_parts(n):
    m = ("From: many@example.net\nTo: alice@example.org\nSubject: %d parts\n"
         "MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=p\n\n") % n
    for i in range(1, n + 1):
        if i == 9999:
            m += "--p\nContent-Type: multipart/alternative; boundary=q\n\n--q\n\nq\n--q--\n"
        else:
            m += "--p\n\n%d\n" % i
    return m + "--p--\n"


M["033-deep-multipart-105"] = deep_multipart(105)
M["034-deep-rfc822-103"] = deep_rfc822(103)
# 035-too-many-parts is generated, not stored: see GENERATED below.

M["036-boundary-in-part-header"] = """\
From: hdr-boundary@example.net
To: alice@example.org
Subject: A part header cut by a boundary
Date: Fri, 01 Dec 2023 08:00:00 +0000
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="cut"

--cut
Content-Type: text/plain
Content-Description: no empty line follows
--cut
Content-Type: message/rfc822

Subject: enclosed, also cut
From: x@example.net
--cut
Content-Type: text/plain

last
--cut--
"""

M["037-dashes-not-boundaries"] = """\
From: dashes@example.net
To: alice@example.org
Subject: Lines starting with dashes
Date: Fri, 01 Dec 2023 09:00:00 +0000
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="sep"

-- preamble signature
--sep
Content-Type: text/plain

Regards,
-- 
Signature line
--separator is not our boundary (it is, by prefix)
---sep is not
--sep
Content-Type: text/plain

  --sep indented is not a boundary
--sep--
-- epilogue
"""

M["038-boundary-whitespace"] = """\
From: ws@example.net
To: alice@example.org
Subject: Boundaries with trailing white space and junk
Date: Fri, 01 Dec 2023 10:00:00 +0000
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary=ws

--ws   \t
Content-Type: text/plain

one
--ws junk after
Content-Type: text/plain

two
--ws-- and trailing text
epilogue
"""

M["039-mixed-case-headers"] = """\
FROM: upper@example.net
TO: alice@example.org
SUBJECT: Upper-case header names
MIME-VERSION: 1.0
CONTENT-TYPE: Multipart/Mixed; BOUNDARY="Case"

--Case
content-type: Text/Plain; Charset=UTF-8
content-transfer-encoding: 7BIT

lower
--Case
CONTENT-TYPE: IMAGE/JPEG; NAME="PIC.JPG"
CONTENT-TRANSFER-ENCODING: BASE64
CONTENT-DISPOSITION: ATTACHMENT; FILENAME="PIC.JPG"

/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDAA==
--Case--
"""

M["040-8bit-parameters"] = ("""\
From: params8@example.net
To: alice@example.org
Subject: 8-bit in parameters and descriptions
Date: Fri, 01 Dec 2023 11:00:00 +0000
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="p8"

--p8
Content-Type: text/plain; charset=utf-8; name=\"""" + u8(u"r\u00e9sum\u00e9.txt") + """\"
Content-Description: """ + u8(u"Lebenslauf f\u00fcr \"Bewerbung\" \\ Stelle") + """
Content-Disposition: attachment; filename=\"""" + u8(u"r\u00e9sum\u00e9.txt") + """\"

CV
--p8
Content-Type: text/plain; charset=\xe9t\xe9
Content-Description: 1"2"3"4"5"

latin-1 bytes in a parameter
--p8--
""")

M["041-empty-multipart"] = """\
From: empty-mp@example.net
To: alice@example.org
Subject: Multipart without any part
Date: Fri, 01 Dec 2023 12:00:00 +0000
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="none"

"""

M["042-apple-mail"] = """\
From: Kim <kim@icloud.example>
Content-Type: multipart/alternative;
	boundary="Apple-Mail=_0F8C1E22-5B3A-4C1E-9D3B-2E2D8A1B7C6D"
Mime-Version: 1.0 (Mac OS X Mail 16.0 \\(3774.600.62\\))
Subject: Lunch?
Message-Id: <5F3B2C1A-1111-2222-3333-444455556666@icloud.example>
Date: Sat, 2 Dec 2023 12:30:00 +0100
To: alice@example.org
X-Mailer: Apple Mail (2.3774.600.62)

--Apple-Mail=_0F8C1E22-5B3A-4C1E-9D3B-2E2D8A1B7C6D
Content-Transfer-Encoding: quoted-printable
Content-Type: text/plain;
	charset=utf-8

Lunch at 1? =F0=9F=8D=95

--Apple-Mail=_0F8C1E22-5B3A-4C1E-9D3B-2E2D8A1B7C6D
Content-Type: multipart/mixed;
	boundary="Apple-Mail=_9A8B7C6D-1E2F-3A4B-5C6D-7E8F9A0B1C2D"

--Apple-Mail=_9A8B7C6D-1E2F-3A4B-5C6D-7E8F9A0B1C2D
Content-Transfer-Encoding: 7bit
Content-Type: text/html;
	charset=us-ascii

<html><body>Lunch at 1?</body></html>
--Apple-Mail=_9A8B7C6D-1E2F-3A4B-5C6D-7E8F9A0B1C2D
Content-Disposition: inline;
	filename=menu.pdf
Content-Type: application/pdf;
	x-unix-mode=0644;
	name="menu.pdf"
Content-Transfer-Encoding: base64

JVBERi0xLjMKJcTl8uXrp/Og0MTGCg==
--Apple-Mail=_9A8B7C6D-1E2F-3A4B-5C6D-7E8F9A0B1C2D--

--Apple-Mail=_0F8C1E22-5B3A-4C1E-9D3B-2E2D8A1B7C6D--
"""

M["043-no-mime-version"] = """\
From: old@example.net
To: alice@example.org
Subject: Content-* fields without MIME-Version or Content-Type
Content-Transfer-Encoding: base64
Content-Disposition: attachment; filename=ignored.txt
Content-ID: <ignored@example.net>

aGVsbG8K
"""

M["044-rfc822-attachment-mime-inner"] = """\
From: attach@example.net
To: alice@example.org
Subject: Message attached with its own MIME structure
Date: Sat, 02 Dec 2023 14:00:00 +0000
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="att"

--att
Content-Type: text/plain; charset=us-ascii

see attached
--att
Content-Type: message/rfc822; name="old.eml"
Content-Disposition: attachment; filename="old.eml"
Content-Description: old message
Content-ID: <old@example.net>

Received: from x by y; Sat, 02 Dec 2023 13:00:00 +0000
From: =?utf-8?B?U3TDqXBoYW5l?= <stephane@example.net>
To: undisclosed-recipients:;
Cc:
Subject: =?utf-8?q?=C3=A9t=C3=A9?=
 continued
Date: Sat, 02 Dec 2023 13:00:00 +0000
Message-ID:
 <folded-id@example.net>
MIME-Version: 1.0
Content-Type: multipart/alternative; boundary="old-alt"

--old-alt
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: base64

w6l0w6kK
--old-alt
Content-Type: text/html; charset=utf-8

<p>&eacute;t&eacute;</p>
--old-alt--
--att--
"""

M["045-bare-lf-in-crlf"] = "From: mixed@example.net\r\nTo: alice@example.org\r\nSubject: CRLF with some bare LF\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=m\r\n\r\n--m\nContent-Type: text/plain\r\n\r\nbare\nlf\r\nand crlf\n--m\r\nContent-Type: text/plain\n\ncrlf\r\n--m--\n"

M["046-boundary-matching-quirks"] = """\
From: quirks@example.net
To: alice@example.org
Subject: Longest boundary wins; a boundary may end in dashes
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="abc-1"

--abc-1
Content-Type: multipart/mixed; boundary="abc"

--abc

inner1
--abc-1
Content-Type: multipart/mixed; boundary="x--"

--x--

one
--x--

two
--x----
--abc-1--
"""

M["047-plain-7bit-canonical"] = """\
From: canon@example.net
To: alice@example.org
Subject:
 folded empty first line
Message-ID:
 <folded@example.net>
In-Reply-To:
\t<tab@example.net>
Date:   
MIME-Version: 1.0
Content-Type: TEXT/Plain; CHARSET=US-ASCII
Content-Transfer-Encoding: 7BIT

Upper-case header, shown in canonical form.
"""

M["048-disposition-and-rfc2231-quirks"] = """\
From: dispo@example.net
To: alice@example.org
Subject: Content-Disposition and RFC 2231 odd cases
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary=dq

--dq
Content-Type: text/plain; charset=utf-8; charset*=x''y; a*1=q; m*1=2; m*0*=us-ascii''1%
Content-Disposition: attachment garbage; filename=x

junk after the disposition type
--dq
Content-Type: text/plain; z*0=a; b=c; a*=x
Content-Disposition: ; filename=noname

empty disposition type
--dq
Content-Type: text/plain
Content-Disposition: inline
Content-Disposition: attachment; filename=second-wins.txt

the second disposition counts when the first has no parameters
--dq--
"""

M["049-address-recovery"] = """\
From: "x"@, pete(his account)@silly.test(his host)
Sender: ,,, a@b ,,
Reply-To: Group: ;
To: "x" (c), x@ , y, <@a:b@c>, <@a,@b:c>, <@bad b@c>
Cc: G1: a@b, G2: c@d; ;
Bcc: a@b@c, <a@b>garbage
Subject: Address lists that need recovery

x
"""

M["050-header-oddities"] = """\
 orphan continuation line
Subject: Header oddities
 continued
From : spaced-colon@example.net
NoColonLine
Content-Type  : text/html
Content-ID: <id> (c) 
Content-Description:  d  
Content-Location:  a
 b  (c) 

<p>x</p>
"""

M["051-differential-findings"] = """\
From: dom. om.ain
Sender: .b, a..b@c, a. b@c
To: "unclosed <x@y>, x \xf2"unclosed too
Cc: bob@example.com (Bob Smi
 th, unterminated comment <q@r>
Bcc: agent (bage, x\x00y <q@r> tail
Reply-To\x00\x00x: reply@example.net
Subject: Cases found by comparing fuzzed input with Dovecot
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary=d

--d
Content-Type: multipart

a multipart type without subtype or boundary
--d
Content-Type: message/rfc822
Content-Transfer-Encoding: 7bit

Subject: inner

x
--d--
"""

# Too big to store with its answers (1.4 MB): make_expected.py APPENDs
# the generated bytes and keeps only the length and FNV-1a hash of each
# answer in NAME.digest; test_mime.c builds the same bytes.
GENERATED = {"035-too-many-parts": lambda: crlf(many_parts(10003))}

# Messages whose bytes are exact already (no CRLF conversion).
RAW = {"017-lf-only", "045-bare-lf-in-crlf"}


def main():
    for name, text in M.items():
        data = text.encode("latin-1") if isinstance(text, str) else text
        if name not in RAW:
            data = crlf(data)
        with open(os.path.join(HERE, name + ".eml"), "wb") as f:
            f.write(data)
    # the empty message: Dovecot refuses it, see 018-empty.noexpect
    open(os.path.join(HERE, "018-empty.eml"), "wb").close()
    files = sorted(f for f in os.listdir(PYDATA) if f.startswith("msg_"))
    for i, f in enumerate(files):
        with open(os.path.join(PYDATA, f), "rb") as src:
            data = crlf(src.read())
        name = "%03d-python-%s.eml" % (101 + i, f[:-4])
        with open(os.path.join(HERE, name), "wb") as dst:
            dst.write(data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
