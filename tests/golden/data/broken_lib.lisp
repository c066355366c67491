; used by core_load_file.lisp: fails on line 3
(setq ok 1)
(undefined_in_lib ok)
