; strategy_greedy.lisp -- the "Greedy search" snippet of docs/guide.md, on SmolLM2-135M-Instruct.
; model: smollm2
;
; The snippet's line is kept verbatim. Lines after a "; [added]" comment bind what it assumes
; (`generator`, `input_tokens`) and print the result. Greedy is deterministic: run it twice, same text.

(use 'lispe_torch)

; [added] a generator on the embedded model and a factual question in its chat format
(setq model (torch_hf_load_model "SmolLM2-135M-Instruct"))
(setq generator (torch_generator_create model "cpu"))
(setq input_tokens (torch_tensor (tokenizer_chat '(("user" "What is the boiling point of water in Celsius?")))))

(setq greedy_result (torch_generate generator input_tokens "greedy"))

; [added]
(println "Greedy answer:" (tokenizer_decode (tensor_slice greedy_result 0 (size input_tokens) (size greedy_result))))
(setq again (torch_generate generator input_tokens "greedy"))
(println "Same output when run again:" (= (tensor_to_list again) (tensor_to_list greedy_result)))
