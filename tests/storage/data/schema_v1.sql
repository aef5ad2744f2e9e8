-- A lab database of schema version 1 (the first cut), two real runs: made by conlab at
-- version 1 and dumped with sqlite3's iterdump. Load it, then set user_version = 1 and the
-- application_id, as the file had.
BEGIN TRANSACTION;
CREATE TABLE interpreter (
	"key" VARCHAR NOT NULL, 
	machine_fingerprint VARCHAR NOT NULL, 
	implementation VARCHAR, 
	version VARCHAR, 
	executable VARCHAR, 
	compiler VARCHAR, 
	gil_disabled BOOLEAN, 
	PRIMARY KEY ("key"), 
	FOREIGN KEY(machine_fingerprint) REFERENCES machine (fingerprint)
);
INSERT INTO "interpreter" VALUES('43849a233b650230cd34','a6f62b9140b00d962632','CPython','3.11.7','/work/main/.venv/bin/python','GCC 12.2.0',0);
CREATE TABLE machine (
	fingerprint VARCHAR NOT NULL, 
	hostname VARCHAR, 
	os_name VARCHAR, 
	os_release VARCHAR, 
	architecture VARCHAR, 
	cpu_model VARCHAR, 
	logical_cores INTEGER, 
	physical_cores INTEGER, 
	usable_cores INTEGER, 
	memory_total_bytes INTEGER, 
	first_seen_at DATETIME NOT NULL, 
	PRIMARY KEY (fingerprint)
);
INSERT INTO "machine" VALUES('a6f62b9140b00d962632','vm','Linux','6.18.44-fc-v669','x86_64','AMD EPYC',2,2,2,25276502016,'2026-11-25 09:30:42.620751');
CREATE TABLE repeat (
	id INTEGER NOT NULL, 
	run_id VARCHAR NOT NULL, 
	repeat_index INTEGER NOT NULL, 
	warmup BOOLEAN NOT NULL, 
	wall_ns INTEGER NOT NULL, 
	cpu_ns INTEGER, 
	start_ns INTEGER, 
	end_ns INTEGER, 
	PRIMARY KEY (id), 
	FOREIGN KEY(run_id) REFERENCES run (id)
);
INSERT INTO "repeat" VALUES(1,'0b8b5f2c-fad6-41c8-a379-da1f4f28b2c7',0,1,105066,112000,1973170225101,1973170330167);
INSERT INTO "repeat" VALUES(2,'0b8b5f2c-fad6-41c8-a379-da1f4f28b2c7',1,0,107389,121999,1973188664599,1973188771988);
INSERT INTO "repeat" VALUES(3,'0b8b5f2c-fad6-41c8-a379-da1f4f28b2c7',2,0,96273,100999,1973189501162,1973189597435);
INSERT INTO "repeat" VALUES(4,'d0a3522c-a9e3-4a74-9ddb-ef68834e4b08',0,1,5381197,5239000,1973261274222,1973266655419);
INSERT INTO "repeat" VALUES(5,'d0a3522c-a9e3-4a74-9ddb-ef68834e4b08',1,0,411110,442000,1973267379280,1973267790390);
INSERT INTO "repeat" VALUES(6,'d0a3522c-a9e3-4a74-9ddb-ef68834e4b08',2,0,381787,413001,1973268292396,1973268674183);
CREATE TABLE run (
	id VARCHAR NOT NULL, 
	sweep_id VARCHAR NOT NULL, 
	status VARCHAR NOT NULL, 
	workload VARCHAR NOT NULL, 
	executor VARCHAR NOT NULL, 
	workers INTEGER NOT NULL, 
	start_method VARCHAR, 
	chunksize INTEGER, 
	tasks INTEGER NOT NULL, 
	size INTEGER NOT NULL, 
	repeats INTEGER NOT NULL, 
	warmups INTEGER NOT NULL, 
	timeout_s FLOAT, 
	tag VARCHAR, 
	error VARCHAR, 
	error_detail VARCHAR, 
	stderr VARCHAR, 
	machine_fingerprint VARCHAR, 
	interpreter_key VARCHAR, 
	python_requested VARCHAR, 
	environment_json VARCHAR, 
	created_at DATETIME NOT NULL, 
	finished_at DATETIME, 
	recorder_host VARCHAR, 
	recorder_pid INTEGER, 
	runner_pid INTEGER, 
	PRIMARY KEY (id), 
	FOREIGN KEY(machine_fingerprint) REFERENCES machine (fingerprint), 
	FOREIGN KEY(interpreter_key) REFERENCES interpreter ("key")
);
INSERT INTO "run" VALUES('0b8b5f2c-fad6-41c8-a379-da1f4f28b2c7','097da8ff-144b-43a7-bdc5-5e45513669f3','ok','benchmod:spin','sequential',1,NULL,NULL,2,1000,2,1,NULL,'v1',NULL,NULL,NULL,'a6f62b9140b00d962632','43849a233b650230cd34',NULL,'{"affinity_cores": 2, "architecture": "x86_64", "cgroup_cpu_quota": null, "collected_at": 1795599042.615532, "cpu_model": "AMD EPYC", "gil_enabled": true, "home": "/root", "hostname": "vm", "interpreter_key": "43849a233b650230cd34", "lab_version": "0.1.0", "load_average": [0.41, 1.23, 1.07], "logical_cores": 2, "machine_fingerprint": "a6f62b9140b00d962632", "machine_id": "3d1219c7c4c5404aaa1f6d2a48adfda4", "memory_total_bytes": 25276502016, "os_name": "Linux", "os_release": "6.18.44-fc-v669", "os_version": "#1 SMP PREEMPT_DYNAMIC @0", "physical_cores": 2, "process_cpu_count": null, "py_gil_disabled": false, "python_build": "main May  9 2026 07:35:25", "python_compiler": "GCC 12.2.0", "python_executable": "/work/main/.venv/bin/python", "python_implementation": "CPython", "python_version": "3.11.7", "start_method": null, "usable_cores": 2, "user": "root"}','2026-11-25 09:30:42.546964','2026-11-25 09:30:42.645960','vm',17278,17281);
INSERT INTO "run" VALUES('d0a3522c-a9e3-4a74-9ddb-ef68834e4b08','097da8ff-144b-43a7-bdc5-5e45513669f3','ok','benchmod:spin','threads',2,NULL,NULL,2,1000,2,1,NULL,'v1',NULL,NULL,NULL,'a6f62b9140b00d962632','43849a233b650230cd34',NULL,'{"affinity_cores": 2, "architecture": "x86_64", "cgroup_cpu_quota": null, "collected_at": 1795599042.7069154, "cpu_model": "AMD EPYC", "gil_enabled": true, "home": "/root", "hostname": "vm", "interpreter_key": "43849a233b650230cd34", "lab_version": "0.1.0", "load_average": [0.41, 1.23, 1.07], "logical_cores": 2, "machine_fingerprint": "a6f62b9140b00d962632", "machine_id": "3d1219c7c4c5404aaa1f6d2a48adfda4", "memory_total_bytes": 25276502016, "os_name": "Linux", "os_release": "6.18.44-fc-v669", "os_version": "#1 SMP PREEMPT_DYNAMIC @0", "physical_cores": 2, "process_cpu_count": null, "py_gil_disabled": false, "python_build": "main May  9 2026 07:35:25", "python_compiler": "GCC 12.2.0", "python_executable": "/work/main/.venv/bin/python", "python_implementation": "CPython", "python_version": "3.11.7", "start_method": null, "usable_cores": 2, "user": "root"}','2026-11-25 09:30:42.649362','2026-11-25 09:30:42.724716','vm',17278,17283);
CREATE TABLE task_sample (
	id INTEGER NOT NULL, 
	run_id VARCHAR NOT NULL, 
	repeat_index INTEGER NOT NULL, 
	task_index INTEGER NOT NULL, 
	pid INTEGER NOT NULL, 
	thread_id INTEGER NOT NULL, 
	start_ns INTEGER NOT NULL, 
	end_ns INTEGER NOT NULL, 
	PRIMARY KEY (id), 
	FOREIGN KEY(run_id) REFERENCES run (id)
);
INSERT INTO "task_sample" VALUES(1,'0b8b5f2c-fad6-41c8-a379-da1f4f28b2c7',0,0,17281,140152588196736,1973170227795,1973170279251);
INSERT INTO "task_sample" VALUES(2,'0b8b5f2c-fad6-41c8-a379-da1f4f28b2c7',0,1,17281,140152588196736,1973170281374,1973170328895);
INSERT INTO "task_sample" VALUES(3,'0b8b5f2c-fad6-41c8-a379-da1f4f28b2c7',1,0,17281,140152588196736,1973188670618,1973188722185);
INSERT INTO "task_sample" VALUES(4,'0b8b5f2c-fad6-41c8-a379-da1f4f28b2c7',1,1,17281,140152588196736,1973188725670,1973188771217);
INSERT INTO "task_sample" VALUES(5,'0b8b5f2c-fad6-41c8-a379-da1f4f28b2c7',2,0,17281,140152588196736,1973189502343,1973189548802);
INSERT INTO "task_sample" VALUES(6,'0b8b5f2c-fad6-41c8-a379-da1f4f28b2c7',2,1,17281,140152588196736,1973189551096,1973189596493);
INSERT INTO "task_sample" VALUES(7,'d0a3522c-a9e3-4a74-9ddb-ef68834e4b08',0,0,17283,140020161705664,1973266381898,1973266428878);
INSERT INTO "task_sample" VALUES(8,'d0a3522c-a9e3-4a74-9ddb-ef68834e4b08',0,1,17283,140020161705664,1973266518401,1973266564710);
INSERT INTO "task_sample" VALUES(9,'d0a3522c-a9e3-4a74-9ddb-ef68834e4b08',1,0,17283,140020161705664,1973267520945,1973267586723);
INSERT INTO "task_sample" VALUES(10,'d0a3522c-a9e3-4a74-9ddb-ef68834e4b08',1,1,17283,140020161705664,1973267665019,1973267708804);
INSERT INTO "task_sample" VALUES(11,'d0a3522c-a9e3-4a74-9ddb-ef68834e4b08',2,0,17283,140020161705664,1973268420361,1973268466920);
INSERT INTO "task_sample" VALUES(12,'d0a3522c-a9e3-4a74-9ddb-ef68834e4b08',2,1,17283,140020161705664,1973268528101,1973268573488);
CREATE INDEX ix_interpreter_machine_fingerprint ON interpreter (machine_fingerprint);
CREATE INDEX ix_run_status ON run (status);
CREATE INDEX ix_run_machine_fingerprint ON run (machine_fingerprint);
CREATE INDEX ix_run_created_at ON run (created_at);
CREATE INDEX ix_run_interpreter_key ON run (interpreter_key);
CREATE INDEX ix_run_workload ON run (workload);
CREATE INDEX ix_run_tag ON run (tag);
CREATE INDEX ix_run_executor ON run (executor);
CREATE INDEX ix_run_sweep_id ON run (sweep_id);
CREATE INDEX ix_repeat_run_id ON repeat (run_id);
CREATE INDEX ix_task_sample_run_id ON task_sample (run_id);
COMMIT;
