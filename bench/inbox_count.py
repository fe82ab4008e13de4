"""Reads `postel mailbox status ACCOUNT` on stdin and prints INBOX's message
count.  Accepts "INBOX messages=N ..." (key=value) and column layouts with
a header line naming a "messages" column; prints nothing if INBOX is absent."""
import re
import sys

header = None
for line in sys.stdin:
    words = line.split()
    if not words:
        continue
    low = [w.lower().rstrip(":") for w in words]
    if "messages" in low and "inbox" not in low:
        header = low
        continue
    if words[0].strip("\"':") != "INBOX":
        continue
    m = re.search(r"messages[=:]\s*(\d+)", line, re.I)
    if m:
        print(m.group(1))
    elif header and len(words) == len(header):
        print(words[header.index("messages")])
    else:
        nums = [w for w in words[1:] if w.isdigit()]
        if nums:
            print(nums[0])
    break
