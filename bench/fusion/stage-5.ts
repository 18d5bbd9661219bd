/** Stage 5 of the fusion bench chain. */
import { benchStage } from './stage.js';

export default benchStage(5);
