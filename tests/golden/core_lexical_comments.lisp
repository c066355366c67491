#!/usr/bin/env lispe
; a line comment
(println 1) ; after code
;; a block comment
   (println "hidden")
;;
(println 2)
(println 3 ;; inline block ;; 4)
(println "a;b" "c;;d")
