; batch_processing.lisp -- the "Batches" snippet of docs/guide.md.
; model: tiny
;
; The snippet's lines are kept verbatim. Lines after a "; [added]" comment are not in the snippet.
; A 2-D input is a batch: each row is a prompt, the result has one row per prompt. Prompts of
; different lengths go through torch_generate_batch (left-padded internally).

(use 'lispe_torch)

; [added] what the block assumes: a generator (tiny random model: fast, its text is noise)
(setq model (torch_model_create "transformer" {"vocab_size":49152 "seed":5}))
(tokenizer_load "SmolLM2-135M-Instruct")
(setq generator (torch_generator_create model "cpu"))
(torch_generator_config generator {"max_length":12 "seed":0})

; Process multiple inputs (future enhancement)
(setq batch_inputs (torch_tensor (integers (10 20) (30 40))))
(setq batch_results (torch_generate generator batch_inputs "top_p"))

; [added]
(println "Input shape" (tensor_shape batch_inputs) "-> output shape" (tensor_shape batch_results))
(println "Row 0:" (tokenizer_decode (@ batch_results 0)))
(println "Row 1:" (tokenizer_decode (@ batch_results 1)))
(println "Ragged prompts, greedy, one call:")
(setq texts (torch_generate_batch generator (strings "The sky is" "My favourite food is pasta and") {"strategy":"greedy"}))
(loop t texts (println "  ->" t))
