// A custom Octo step written in JavaScript (componentize-js), against the `step` world of wit/.
// Imports name the interface with its package version; exports are the world's functions.
import { write } from 'octo:plugin/log@0.1.0';
import { setOutput } from 'octo:plugin/variables@0.1.0';

export function describe() {
  return {
    name: 'JavaScript greeter',
    description: 'Greets someone from JavaScript',
    parameters: [
      {
        name: 'name',
        label: 'Name',
        helpText: 'Who to greet',
        defaultValue: 'world',
        required: false,
        sensitive: false,
      },
    ],
  };
}

// `args` is a list of { name, value }. Returning is success; a thrown string is the `err` of
// `result<_, string>`, the step's failure message. Anything else thrown would trap, so it is
// turned into its message here.
export function run(args) {
  try {
    greet(args.find((a) => a.name === 'name')?.value ?? 'world');
  } catch (e) {
    throw typeof e === 'string' ? e : String(e);
  }
}

function greet(name) {
  if (name === 'fail') {
    throw 'asked to fail';
  }
  if (name === 'bug') {
    null.greet(); // a TypeError
  }
  write('info', `Hello from JavaScript, ${name}!`);
  setOutput('JsGreeting', `Hello, ${name}`, false);
}
