"""Reads a subunit v2 stream (stestr last --subunit) on stdin; prints one JSON object on stdout:
ran, passed, skipped, failed, failures [{test, reason}], skips [{test, reason}], and the run's
seconds, timedOut, exitCode and workspace given as arguments; and a human summary on stderr.

  summary.py SECONDS TIMED_OUT(true|false) EXIT_CODE WORKSPACE < results.subunit
A class whose setUpClass fails appears as one failed "test" (setUpClass (module.Class)),
as in tempest's own summary; the tests it hides are not counted.
"""
import json
import re
import sys

import subunit
import testtools

tests = []


def reason_of(details, names):
    for name in names:
        if name in details:
            text = details[name].as_text().strip()
            lines = [line for line in text.splitlines() if line.strip()]
            # The exception and, for tempest's errors, its "Details: ..." line are the cause.
            tail = []
            for line in reversed(lines):
                tail.insert(0, line.strip())
                if not line.startswith((' ', 'Details:')) or len(tail) >= 4:
                    break
            return ' '.join(tail)[:600]
    return ''


def on_test(test):
    status = test['status']
    if status in ('exists', 'inprogress'):
        return
    tests.append({
        'test': re.sub(r'\[.*\]$', '', test['id']),
        'status': status,
        'reason': reason_of(test['details'], ('traceback', 'reason')),
    })


result = testtools.StreamToDict(on_test)
result.startTestRun()
subunit.ByteStreamToStreamResult(sys.stdin.buffer, non_subunit_name='stdout').run(result)
result.stopTestRun()

failed = [t for t in tests if t['status'] in ('fail', 'uxsuccess')]
skipped = [t for t in tests if t['status'] == 'skip']
seconds, timed_out, exit_code, workspace = sys.argv[1:5]
summary = {
    'ran': len(tests),
    'passed': sum(t['status'] in ('success', 'xfail') for t in tests),
    'skipped': len(skipped),
    'failed': len(failed),
    'failures': [{'test': t['test'], 'reason': t['reason']} for t in sorted(failed, key=lambda t: t['test'])],
    'skips': [{'test': t['test'], 'reason': t['reason']} for t in sorted(skipped, key=lambda t: t['test'])],
    'seconds': int(seconds),
    'timedOut': timed_out == 'true',
    'exitCode': int(exit_code),
    'workspace': workspace,
}
print(json.dumps(summary))
line = 'run-tempest: Ran {ran}, Passed {passed}, Skipped {skipped}, Failed {failed} in {seconds} s'
print(line.format(**summary) + (' (timed out)' if summary['timedOut'] else ''), file=sys.stderr)
for failure in summary['failures']:
    print(f"  FAIL {failure['test']}: {failure['reason']}", file=sys.stderr)
