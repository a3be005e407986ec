"""Apache Hadoop's own WebHDFS client against a WebHDFS server, for tests/hadoop.rs.

Runs org.apache.hadoop.hdfs.web.WebHdfsFileSystem from the Hadoop jars pyspark ships, in
one JVM started through py4j (pyspark's launch_gateway, no Spark context), and does what
the JSON spec in argv[1] asks:

  {"url": "webhdfs://127.0.0.1:PORT",
   "list": ["/folder", ...],                    # listed recursively (listFiles) and flat
   "copy": ["/file", ...],                      # read whole, written again under /roundtrip
   "ranges": [["/file", offset, length], ...],  # seek + read, written to /ranges/file.offset
   "write": [{"path": ..., "size": n, "seed": s}, ...],  # pattern(n, s), in 1 MiB writes
   "append": [{"path": ..., "size": n, "seed": s}, ...],  # appended to an existing file
   "rename": [["/from", "/to"], ...],
   "delete": ["/path", ...]}

and prints one line "RESULT <json>": the listings, the lengths read, the block locations
of each written file, and what exists after the renames and deletes. The user is
HADOOP_USER_NAME's (simple authentication: user.name).
"""

import json
import sys
import traceback

from pyspark.java_gateway import launch_gateway


def pattern(n, seed):
    """The bytes tests/hadoop.rs expects: byte i is (7 i + seed + i / 1024) mod 256."""
    return bytes(((i * 7 + seed + (i >> 10)) & 0xFF) for i in range(n))


def main():
    spec = json.loads(sys.argv[1])
    gateway = launch_gateway()
    try:
        result = run(gateway, spec)
    except Exception:
        # Printed while the JVM is up: a Java exception's text comes from it.
        traceback.print_exc()
        gateway.shutdown()
        sys.exit(1)
    gateway.shutdown()
    print("RESULT " + json.dumps(result), flush=True)


def run(gateway, spec):
    jvm = gateway.jvm
    Path = jvm.org.apache.hadoop.fs.Path
    conf = jvm.org.apache.hadoop.conf.Configuration()
    fs = jvm.org.apache.hadoop.fs.FileSystem.get(jvm.java.net.URI(spec["url"]), conf)
    if fs.getClass().getName() != "org.apache.hadoop.hdfs.web.WebHdfsFileSystem":
        raise SystemExit("not Hadoop's WebHDFS client: " + fs.getClass().getName())
    def read(stream, limit=None):
        # Read inside the JVM and returned whole: a byte[] handed to stream.read() through
        # py4j is a copy, whose filling Python never sees.
        data = stream.readAllBytes() if limit is None else stream.readNBytes(limit)
        stream.close()
        return bytes(data)

    def write(path, data, append=False):
        out = fs.append(Path(path)) if append else fs.create(Path(path), True)
        for at in range(0, len(data), 1 << 20):
            out.write(bytearray(data[at : at + (1 << 20)]))
        out.close()

    result = {"hadoop": jvm.org.apache.hadoop.util.VersionInfo.getVersion()}

    result["listFiles"] = {}
    result["listStatus"] = {}
    for folder in spec.get("list", []):
        files = []
        it = fs.listFiles(Path(folder), True)
        while it.hasNext():
            status = it.next()
            files.append([status.getPath().toUri().getPath(), status.getLen()])
        result["listFiles"][folder] = sorted(files)
        result["listStatus"][folder] = sorted(
            [s.getPath().getName(), bool(s.isDirectory()), s.getLen()]
            for s in fs.listStatus(Path(folder))
        )

    result["read"] = {}
    for path in spec.get("copy", []):
        data = read(fs.open(Path(path)))
        status = fs.getFileStatus(Path(path))
        if status.getLen() != len(data):
            raise SystemExit(f"{path}: read {len(data)} bytes of {status.getLen()}")
        write("/roundtrip" + path, data)
        result["read"][path] = len(data)

    for path, offset, length in spec.get("ranges", []):
        stream = fs.open(Path(path))
        stream.seek(offset)
        write(f"/ranges{path}.{offset}", read(stream, length))

    result["blocks"] = {}
    for item in spec.get("write", []):
        write(item["path"], pattern(item["size"], item["seed"]))
        status = fs.getFileStatus(Path(item["path"]))
        blocks = fs.getFileBlockLocations(status, 0, status.getLen())
        result["blocks"][item["path"]] = [[b.getOffset(), b.getLength()] for b in blocks]

    for item in spec.get("append", []):
        write(item["path"], pattern(item["size"], item["seed"]), append=True)

    result["renamed"] = [bool(fs.rename(Path(a), Path(b))) for a, b in spec.get("rename", [])]
    result["deleted"] = [bool(fs.delete(Path(p), False)) for p in spec.get("delete", [])]
    result["exists"] = {
        p: bool(fs.exists(Path(p)))
        for pair in spec.get("rename", [])
        for p in pair
    }
    result["exists"].update({p: bool(fs.exists(Path(p))) for p in spec.get("delete", [])})
    result["home"] = fs.getHomeDirectory().toUri().getPath()
    fs.close()
    return result


if __name__ == "__main__":
    main()
