; troubleshooting_incoherent.lisp -- the "Incoherent output" snippet of docs/guide.md.
; model: tiny
;
; The snippet's lines are kept verbatim. Lines after a "; [added]" comment are not in the snippet.
; A tiny random transformer keeps this fast (its text is noise): the script shows the settings in force
; and that greedy decoding is deterministic.

(use 'lispe_torch)

; [added] what the block assumes: a generator and a prompt
(setq model (torch_model_create "transformer" {"vocab_size":49152 "seed":4}))
(tokenizer_load "SmolLM2-135M-Instruct")
(setq generator (torch_generator_create model "cpu"))
(setq input_tokens (torch_tensor (tokenizer_encode "Clear thinking")))

; Lower temperature
(torch_set_generation_params generator 50 0.5 40 0.9)

; Use greedy or beam search
(setq result (torch_generate generator input_tokens "greedy"))

; [added]
(println generator)
(println "Greedy:" (tokenizer_decode result))
(println "Deterministic:" (= (tensor_to_list result) (tensor_to_list (torch_generate generator input_tokens "greedy"))))
