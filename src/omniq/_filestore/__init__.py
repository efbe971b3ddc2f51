"""The file store's disk work, written once and shared by both twins.

Plain blocking code: the storage classes in ``omniq._async.storage.file`` (and its
generated blocking twin) call it directly in the blocking twin and through
``arun_blocking`` in the async one. By job:

* :mod:`.names`: file names (claim order, attempt, worker) and the record format;
* :mod:`.tree`: the directories, and the commit protocol every change goes through;
* :mod:`.keys`: unique-key files, settled by atomic creates under ``flock``;
* :mod:`.state`: named state records, their mark moved with their tasks in one commit;
* :mod:`.layout`: opening a store: its lock, version marker, v1 migration, sweeps;
* :mod:`.moves`: enqueue, claim, finish, cancel, requeue, heartbeat, recovery;
* :mod:`.inspect`: lookups, listings, counts and purges (names first, files last);
* :mod:`.index`: what one process knows of ``pending/`` (no file opened to keep it).

The layout and the protocol are described in ``docs/file-backend.md``.
"""
