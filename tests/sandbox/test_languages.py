"""Every language of the registry: hello world and stdin echo through the real sandbox."""

from __future__ import annotations

import pytest

from execution_plane.sandbox import SandboxPool, Verdict

HELLO = {
    "python": 'print("hello, world")',
    "javascript": 'console.log("hello, world")',
    "bash": 'echo "hello, world"',
    "c": '#include <stdio.h>\nint main(void) { puts("hello, world"); return 0; }\n',
    "cpp": '#include <iostream>\nint main() { std::cout << "hello, world" << std::endl; }\n',
    "java": (
        "public class Main { public static void main(String[] a) {"
        ' System.out.println("hello, world"); } }\n'
    ),
    "rust": 'fn main() { println!("hello, world"); }\n',
    "go": 'package main\nimport "fmt"\nfunc main() { fmt.Println("hello, world") }\n',
}

ECHO = {
    "python": "import sys\nsys.stdout.write(sys.stdin.read())",
    "javascript": "process.stdin.pipe(process.stdout)",
    "bash": "cat",
    "c": (
        "#include <stdio.h>\nint main(void) { int c;"
        " while ((c = getchar()) != EOF) putchar(c); return 0; }\n"
    ),
    "cpp": (
        "#include <iostream>\nint main() { std::string line;"
        " while (std::getline(std::cin, line)) std::cout << line << '\\n'; }\n"
    ),
    "java": (
        "import java.io.*;\npublic class Main { public static void main(String[] a)"
        " throws IOException { System.in.transferTo(System.out); } }\n"
    ),
    "rust": (
        "use std::io::{self, Read, Write};\nfn main() { let mut s = String::new();"
        " io::stdin().read_to_string(&mut s).unwrap(); io::stdout().write_all(s.as_bytes())"
        ".unwrap(); }\n"
    ),
    "go": ('package main\nimport ("io"; "os")\nfunc main() { io.Copy(os.Stdout, os.Stdin) }\n'),
}

EXPECTED = {"python", "javascript", "bash", "c", "cpp"}


def test_the_expected_languages_are_available(pool: SandboxPool) -> None:
    ids = {lang.id for lang in pool.languages()}
    assert EXPECTED <= ids, pool.unavailable
    for lang in pool.languages():
        assert lang.version and lang.version != "unknown", lang


@pytest.mark.parametrize("language", sorted(HELLO))
async def test_hello_world(pool: SandboxPool, run_job, language: str) -> None:
    if language not in {lang.id for lang in pool.languages()}:
        pytest.skip(f"{language} not on this machine: {pool.unavailable.get(language)}")
    ran = await run_job(language, HELLO[language])
    assert ran.outcome.verdict is Verdict.OK, (ran.outcome, ran.stderr)
    assert ran.stdout == b"hello, world\n"
    assert ran.outcome.usage.wall_time_ms > 0


@pytest.mark.parametrize("language", sorted(ECHO))
async def test_stdin_echo(pool: SandboxPool, run_job, language: str) -> None:
    if language not in {lang.id for lang in pool.languages()}:
        pytest.skip(f"{language} not on this machine: {pool.unavailable.get(language)}")
    data = b"first line\nsecond line \xc3\xa9\n" * 100
    ran = await run_job(language, ECHO[language], stdin=data)
    assert ran.outcome.verdict is Verdict.OK, (ran.outcome, ran.stderr)
    assert ran.stdout == data
